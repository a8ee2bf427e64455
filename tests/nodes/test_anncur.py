"""ANNCUR (retrievers/anncur.py) with a real scorer: MiniLM late interaction.

* the CUR approximation equals the exact scores when every item is an anchor (k_q >= N);
* the scorer-call budget: exactly ``budget`` calls per query, split between anchor items and
  re-scoring, counted by the scorer itself;
* the anchor matrix saved to .npy reloads and is reused without scoring again.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import pytest

from rag.core.errors import ConfigError
from rag.core.types import Document, Query, Ranking
from rerankers import LateInteractionReranker
from retrievers import BM25Retriever
from retrievers.anncur import AnnCurRetriever, cur_scores

pytest.importorskip("torch")

ANCHORS = [
    "largest planet in the solar system",
    "which planet has rings",
    "closest planet to the sun",
    "red planet with two moons",
    "planet with the hottest surface",
    "ice giant tilted on its side",
    "dwarf planet beyond Neptune",
    "Earth's natural satellite",
    "space telescope in orbit",
    "galaxy containing the sun",
    "how long is a day on Venus",
    "gas giant with a great red spot",
]


class CountingScorer(LateInteractionReranker):
    """The real late-interaction scorer, counting the (query, document) pairs it scores."""

    name: ClassVar[str] = ""  # not registered

    def __init__(self, encoder=None, cache_size: int = 4096) -> None:
        super().__init__(encoder, cache_size)
        self.pairs = 0

    def _score(self, query, docs):
        self.pairs += len(docs)
        return super()._score(query, docs)


@pytest.fixture(scope="module")
def scorer():
    return CountingScorer().load()


@pytest.fixture(scope="module")
def docs(demo_docs) -> list[Document]:
    return demo_docs[:10]


def exact(scorer, query: str, docs: list[Document]) -> dict[str, float]:
    r = scorer.rerank(Ranking.from_scored(Query(text=query), ((d, 0.0) for d in docs)))
    return {h.id: h.score for h in r.hits}


def test_cur_is_exact_when_every_item_is_an_anchor(scorer, docs) -> None:
    r = AnnCurRetriever(scorer, anchor_queries=ANCHORS, n_anchor_items=len(docs), budget=len(docs))
    r.index(docs)
    assert r._r.shape == (len(ANCHORS), len(docs))
    assert np.linalg.matrix_rank(r._r.astype(np.float64)) == len(docs)  # full column rank
    q = "Which planet is the largest?"
    idx, c, s_hat = r.approximate(q)
    assert sorted(idx.tolist()) == list(range(len(docs)))
    want = exact(scorer, q, docs)
    np.testing.assert_allclose(s_hat, [want[i] for i in r.item_ids], rtol=0, atol=1e-3)
    # the pure function too, with anchors in any order
    perm = np.random.default_rng(1).permutation(len(docs))
    got = cur_scores(np.array([want[r.item_ids[j]] for j in perm]), r._r, perm)
    np.testing.assert_allclose(got, [want[i] for i in r.item_ids], rtol=0, atol=1e-3)


def test_fewer_anchor_items_approximate_and_rescore_exactly(scorer, docs) -> None:
    r = AnnCurRetriever(scorer, anchor_queries=ANCHORS, n_anchor_items=4, budget=7).index(docs)
    q = "red planet with two small moons"
    out = r.retrieve(q, k=5)
    want = exact(scorer, q, docs)
    assert out.ids[0] == max(want, key=want.get) == "mars"
    for h in out.hits:  # the top of the ranking carries the scorer's exact scores
        assert h.score == pytest.approx(want[h.id], abs=1e-4)


@pytest.mark.parametrize("anchor_items", ["random", "first_stage"])
def test_budget_accounting(scorer, docs, anchor_items) -> None:
    fs = BM25Retriever() if anchor_items == "first_stage" else None
    r = AnnCurRetriever(
        scorer,
        anchor_queries=ANCHORS[:6],
        n_anchor_items=3,
        budget=8,
        anchor_items=anchor_items,
        first_stage=fs,
    )
    before = scorer.pairs
    r.index(docs)
    assert scorer.pairs - before == 6 * len(docs)  # offline: k_q x N
    queries = ["largest planet", "moons of Mars", "telescope launched in 1990"]
    before = scorer.pairs
    out = r.retrieve_batch(queries, k=10)
    assert [o.provenance["scorer_calls"] for o in out] == ["8", "8", "8"]
    assert scorer.pairs - before == 3 * 8  # online: budget per query, no more
    for o in out:  # the 8 exactly scored items come first, then the CUR-ordered tail
        assert len(o) == len(docs)
    # a budget above the corpus scores every item once
    big = AnnCurRetriever(scorer, anchor_queries=ANCHORS[:6], n_anchor_items=3, budget=50)
    one = big.index(docs).retrieve("largest planet", k=3)
    assert one.provenance == {"scorer_calls": str(len(docs))}


def test_anchor_matrix_saved_and_reused(scorer, docs, tmp_path) -> None:
    r = AnnCurRetriever(scorer, anchor_queries=ANCHORS[:5], n_anchor_items=3, budget=6).index(docs)
    path = r.save_anchor_matrix(tmp_path / "r_anc.npy")
    assert np.load(path).shape == (5, len(docs))
    before = scorer.pairs
    again = AnnCurRetriever(scorer, n_anchor_items=3, budget=6, anchor_matrix=str(path))
    again.index(docs)
    assert scorer.pairs == before  # nothing re-scored offline
    np.testing.assert_array_equal(again._r, r._r)
    assert again.retrieve("moons of Mars", k=4).ids == r.retrieve("moons of Mars", k=4).ids
    with pytest.raises(ConfigError, match="anchor queries differ"):
        AnnCurRetriever(scorer, anchor_queries=["x"], anchor_matrix=str(path)).index(docs)


def test_bad_config() -> None:
    with pytest.raises(ConfigError, match="budget .* must be >= n_anchor_items"):
        AnnCurRetriever(n_anchor_items=10, budget=5)
    with pytest.raises(ConfigError, match="needs a first_stage"):
        AnnCurRetriever(anchor_items="first_stage")
    with pytest.raises(ConfigError, match="anchor_items must be one of"):
        AnnCurRetriever(anchor_items="kmeans")
    with pytest.raises(ConfigError, match="scorer must be a reranker"):
        AnnCurRetriever(scorer=BM25Retriever())


@pytest.mark.slow  # two CLI subprocesses, each loading MiniLM
def test_cli_index_and_search_with_a_config(tmp_path) -> None:
    import json
    import os
    import subprocess
    import sys

    from rag.app.cli import demo_corpus_path

    cfg = tmp_path / "anncur.json"
    cfg.write_text(json.dumps({"type": "anncur", "n_anchor_queries": 24, "n_anchor_items": 6,
                               "budget": 12}))  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    run = [sys.executable, "-m", "rag.app.cli"]
    subprocess.run(
        [*run, "index", str(demo_corpus_path()), "--out", str(tmp_path / "idx"), "--config",
         str(cfg)], check=True, env=env, capture_output=True,
    )  # fmt: skip
    assert (tmp_path / "idx").exists()
    out = subprocess.run(
        [*run, "search", str(tmp_path / "idx"), "red planet with two moons", "-k", "3", "--json"],
        check=True,
        env=env,
        capture_output=True,
        text=True,
    )
    assert "mars" in out.stdout
