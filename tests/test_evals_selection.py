"""Leave-one-collection-out selection (``evals.selection``, ``bench/select_presets.py``) and the
hybrid's default candidate depth (500, chosen from ``bench/bench_fusion_depth.py``).

Synthetic per-query scores where the right answer is known, then real BM25 runs on tiny BEIR
sets written to ``tmp_path``; no model is loaded."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rag.errors import ConfigError


def _scores(**systems: list[float]) -> dict[str, dict[str, float]]:
    return {s: {f"q{i}": v for i, v in enumerate(vals)} for s, vals in systems.items()}


def test_choice_never_sees_the_held_out_collection() -> None:
    from evals.selection import leave_one_out

    # "spike" is the best system by far on c only; "steady" is a little better than the
    # baseline everywhere else. Held out c, the choice must be made on a and b alone.
    per_query = {
        "a": _scores(base=[0.5] * 8, steady=[0.6] * 8, spike=[0.1] * 8),
        "b": _scores(base=[0.4] * 8, steady=[0.5] * 8, spike=[0.1] * 8),
        "c": _scores(base=[0.3] * 8, steady=[0.2] * 8, spike=[1.0] * 8),
    }
    sel = leave_one_out(per_query, "base", ["base", "steady", "spike"], n_permutations=2000)
    folds = {f.held_out: f for f in sel.folds}
    assert folds["c"].chosen == "steady"  # spike's 1.0 on c was not looked at
    assert folds["c"].delta == pytest.approx(-0.1)
    assert folds["c"].selection_mean == {"base": 0.45, "steady": 0.55, "spike": 0.1}
    # held out a: the mean over b and c is base 0.35, steady 0.35, spike 0.55 -> spike
    assert folds["a"].chosen == "spike" and folds["a"].delta == pytest.approx(-0.4)
    assert folds["a"].p_value < 0.01  # 8 queries, all -0.4: 2 of 256 sign patterns as extreme
    assert sel.mean_delta == pytest.approx((-0.4 + folds["b"].delta - 0.1) / 3)
    assert sel.significant_folds == []  # every significant fold is a loss


def test_ties_go_to_the_first_candidate_and_the_baseline_scores_zero() -> None:
    from evals.selection import leave_one_out

    same = [0.2, 0.4, 0.6, 0.8]
    per_query = {c: _scores(base=same, twin=same) for c in ("a", "b", "c")}
    sel = leave_one_out(per_query, "base")  # default order: the baseline first
    assert [f.chosen for f in sel.folds] == ["base"] * 3
    assert all(f.delta == 0 and f.p_value == 1.0 and f.p_holm == 1.0 for f in sel.folds)


def test_a_real_gain_is_significant_after_holm() -> None:
    from evals.selection import leave_one_out

    per_query = {
        c: _scores(
            base=[0.1 * (i % 5) for i in range(40)],
            better=[0.1 * (i % 5) + 0.05 + 0.01 * (i % 3) for i in range(40)],
        )
        for c in ("a", "b", "c")
    }
    sel = leave_one_out(per_query, "base", ["base", "better"], n_permutations=2000)
    assert [f.chosen for f in sel.folds] == ["better"] * 3
    assert sel.significant_folds == ["a", "b", "c"]
    assert all(f.p_holm <= 3 * f.p_value + 1e-12 and f.p_holm < 0.05 for f in sel.folds)
    assert sel.mean_delta == pytest.approx(0.05 + 0.01 * 39 / 40)  # i % 3 sums to 39 over 40


def test_selection_inputs_are_checked() -> None:
    from evals.selection import leave_one_out

    with pytest.raises(ConfigError, match="at least 2 collections"):
        leave_one_out({"a": _scores(base=[1.0, 0.0])}, "base")
    with pytest.raises(ConfigError, match="no scores for"):
        leave_one_out({"a": _scores(base=[1.0, 0.0]), "b": _scores(x=[1.0, 0.0])}, "base")
    uneven = {
        "a": {"base": {"q1": 1.0, "q2": 0.0}, "x": {"q1": 1.0}},
        "b": _scores(base=[1, 0], x=[0, 1]),
    }
    with pytest.raises(ConfigError, match="different queries"):
        leave_one_out(uneven, "base", ["x"])


def _beir(root: Path, docs: dict[str, str], queries: dict[str, str], qrels: dict[str, str]) -> Path:
    (root / "qrels").mkdir(parents=True)
    (root / "corpus.jsonl").write_text(
        "".join(json.dumps({"_id": i, "title": "", "text": t}) + "\n" for i, t in docs.items())
    )
    (root / "queries.jsonl").write_text(
        "".join(json.dumps({"_id": q, "text": t}) + "\n" for q, t in queries.items())
    )
    body = "".join(f"{q}\t{d}\t1\n" for q, d in qrels.items())
    (root / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n" + body)
    return root


def test_selection_over_real_bm25_runs(tmp_path: Path) -> None:
    """Two BM25 settings on three tiny collections through ``rag eval``'s harness: long
    documents that repeat a query term are penalised by length normalisation (b = 0.75) and
    not without it (b = 0), so the selection must prefer the one that wins on the others."""
    from evals.datasets import load_dataset
    from evals.harness import evaluate
    from evals.selection import leave_one_out
    from retrievers import BM25Retriever

    per_query: dict[str, dict[str, dict[str, float]]] = {}
    for c, topic in enumerate(("penguin", "volcano", "river")):
        filler = " ".join(f"word{j}" for j in range(60))
        docs = {
            f"{topic}-short": f"{topic} facts",
            f"{topic}-long": f"{topic} {topic} {filler}",
            **{f"other-{c}-{i}": f"unrelated text {i}" for i in range(5)},
        }
        ds = load_dataset(
            _beir(
                tmp_path / topic,
                docs,
                {"q1": topic, "q2": f"{topic} facts"},
                {"q1": f"{topic}-short", "q2": f"{topic}-short"},
            )
        )
        per_query[topic] = {}
        for name, b in (("norm", 0.75), ("flat", 0.0)):
            res = evaluate(BM25Retriever(b=b), ds, ["ndcg@10"], progress=False, index=True)
            per_query[topic][name] = res.per_query["nDCG@10"]
    assert per_query["penguin"]["norm"]["q1"] == 1.0 and per_query["penguin"]["flat"]["q1"] < 1.0
    sel = leave_one_out(per_query, "flat", ["flat", "norm"], n_permutations=500)
    assert [f.chosen for f in sel.folds] == ["norm"] * 3 and sel.mean_delta > 0


def test_hybrid_fuses_500_candidates_per_child_by_default(demo_docs) -> None:
    from rag.nodes import Node, _import_all_nodes
    from retrievers import BM25Retriever, HybridRetriever, RerankFusionRetriever

    asked: list[int] = []

    class Recording(BM25Retriever):
        def _retrieve(self, queries, k, filter):  # type: ignore[no-untyped-def]
            asked.append(k)
            return super()._retrieve(queries, k, filter)

    hybrid = HybridRetriever([Recording(), BM25Retriever()]).index(demo_docs)
    hybrid.retrieve("planet", k=10)
    assert asked == [500]  # what reached the child, not only the attribute
    asked.clear()
    HybridRetriever([Recording()], depth=100).index(demo_docs).retrieve("planet", k=10)
    assert asked == [100]  # a configured depth wins
    asked.clear()
    HybridRetriever([Recording()]).index(demo_docs).retrieve("planet", k=800)
    assert asked == [800]  # never fewer than k
    # an eval/preset config without a depth gets the default; rerank fusion keeps 100 (its
    # rerankers score the pool, so their cost grows with the depth)
    _import_all_nodes()
    cfg = {"type": "hybrid", "retrievers": [{"type": "bm25"}, {"type": "bm25"}]}
    from_config = Node.from_config(cfg)
    assert isinstance(from_config, HybridRetriever) and from_config.candidate_depth(10) == 500
    assert RerankFusionRetriever([BM25Retriever()], []).candidate_depth(10) == 100
