"""RM3 and Rocchio behave as specified; the fast and quality presets index and search adi."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from conftest import dataset_dir
from tolerance import assert_rankings_match

from rag.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def adi():
    from evals import load_beir

    path = dataset_dir("adi")
    if not path.exists():
        pytest.skip("shared adi collection not present")
    return load_beir(path)


@pytest.fixture(scope="module")
def bm25(adi):
    from retrievers import BM25Retriever

    return BM25Retriever().index(adi.corpus)


def _rm3(bm25, **kw):
    from retrievers import RM3Retriever

    r = RM3Retriever(bm25=bm25, **kw)
    r._docs = dict(bm25.documents)  # the child is already indexed
    return r


def test_rm3_with_original_weight_one_is_bm25_exactly(adi, bm25):
    rm3 = _rm3(bm25, original_query_weight=1.0)
    for a, b in zip(bm25.retrieve_batch(adi.queries, k=20), rm3.retrieve_batch(adi.queries, k=20)):
        assert a.ids == b.ids
        assert a.scores == b.scores


def test_rm3_expansion_matches_the_relevance_model(adi, bm25):
    rm3 = _rm3(bm25, fb_docs=5, fb_terms=8, original_query_weight=0.6)
    q = adi.queries[0].text
    w = rm3.expansion(q)
    q_toks = [t for t in bm25.tokenize([q])[0] if t in bm25._bm25.vocab_dict]
    # the original query carries 0.6 in total, the feedback terms 0.4; at most 8 new terms
    assert sum(w.values()) == pytest.approx(1.0)
    assert sum(c / len(q_toks) * 0.6 for c in Counter(q_toks).values()) == pytest.approx(0.6)
    assert len(set(w) - set(q_toks)) <= 8
    # independent recomputation of P(t|R) from the first pass (BM25 scores x tf / |d|)
    first = bm25.retrieve(q, k=5)
    rel: Counter = Counter()
    for h in first.hits:
        toks = bm25.tokenize([h.document.full_text])[0]
        for t, c in Counter(toks).items():
            rel[t] += h.score * c / len(toks)
    n = len(bm25.documents)
    df = {t: sum(t in bm25.tokenize([d.full_text])[0] for d in adi.corpus) for t in rel}
    ok = [
        (t, p)
        for t, p in sorted(rel.items(), key=lambda x: (-x[1], x[0]))
        if t.isalnum() and 2 <= len(t) <= 20 and df[t] / n <= 0.1
    ][:8]
    total = sum(p for _, p in ok)
    for t, p in ok:
        base = 0.6 * Counter(q_toks)[t] / len(q_toks)
        assert w[t] == pytest.approx(base + 0.4 * p / total, rel=1e-5)
    # and the score is sum_t w(t) * bm25(t, d), checked against bm25s term by term
    expected = sum(wt * bm25._bm25.get_scores([t]) for t, wt in w.items())
    assert np.allclose(rm3.scores(q), expected, rtol=1e-5, atol=1e-6)


def test_rm3_and_rocchio_reject_bad_settings():
    from retrievers import DensePRFRetriever, RM3Retriever

    with pytest.raises(ConfigError, match="original_query_weight"):
        RM3Retriever(original_query_weight=1.5)
    with pytest.raises(ConfigError, match="fb_docs"):
        RM3Retriever(fb_docs=0)
    with pytest.raises(ConfigError, match="alpha, beta"):
        DensePRFRetriever(alpha=0, beta=0)


def test_rocchio_is_dense_at_beta_zero_and_the_centroid_mix_otherwise(adi):
    from retrievers import DensePRFRetriever, DenseRetriever

    dense = DenseRetriever().index(adi.corpus)
    qs = adi.queries[:8]
    plain = DensePRFRetriever(dense=dense, beta=0.0)
    plain._docs = dict(dense.documents)
    for a, b in zip(dense.retrieve_batch(qs, k=10), plain.retrieve_batch(qs, k=10)):
        assert a.ids == b.ids and a.scores == b.scores
    prf = DensePRFRetriever(dense=dense, fb_docs=3, alpha=1.0, beta=0.5)
    prf._docs = dict(dense.documents)
    store = dense.store
    for q, got in zip(qs, prf.retrieve_batch(qs, k=10)):
        v = dense.encoder.encode([q.text], kind="query")[0]
        top = dense.retrieve(q, k=3).ids
        new = v + 0.5 * store.vectors(top).mean(axis=0)
        new /= np.linalg.norm(new)
        ids = np.array(list(store._ids))
        s = np.asarray(store._vecs, dtype=np.float32) @ new
        order = np.lexsort((np.arange(len(s)), -s))[:10]
        # recomputed here in another order: scores within 1e-5, near-ties compared as sets
        assert_rankings_match(got.ids, got.scores, ids[order].tolist(), s[order], 1e-5,
                              dict(zip(ids.tolist(), s, strict=True)))


def test_presets_are_packaged_configs():
    from rag.presets import load_preset, preset_config, presets

    assert {"fast", "quality"} <= set(presets())
    for name in presets():
        node = load_preset(name)
        assert node.to_config()["type"] == preset_config(name)["type"]
    with pytest.raises(ConfigError, match="unknown preset 'best'; available: fast, quality"):
        load_preset("best")


def _cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-m", "rag.cli", *args], capture_output=True, text=True, env=env, cwd=ROOT
    )


@pytest.mark.parametrize("name", ["fast", "quality"])
def test_cli_index_preset_builds_indexes_and_searches(name, adi, tmp_path):
    corpus = dataset_dir("adi") / "corpus.jsonl"
    out = tmp_path / name
    r = _cli("index", str(corpus), "--out", str(out), "--preset", name)
    assert r.returncode == 0, r.stderr
    assert "indexed 82 documents" in r.stdout
    q = next(q for q in adi.queries if q.id in adi.qrels)
    r = _cli("search", str(out), q.text, "-k", "5", "--json")
    assert r.returncode == 0, r.stderr
    hits = json.loads(r.stdout)
    assert len(hits) == 5 and any(h["id"] in adi.qrels[q.id] for h in hits)


def test_cli_preset_errors(tmp_path):
    corpus = dataset_dir("adi") / "corpus.jsonl"
    r = _cli("index", str(corpus), "--out", str(tmp_path / "x"), "--preset", "best")
    assert r.returncode == 2 and r.stderr.startswith("error: unknown preset 'best'")
    r = _cli(
        "index", str(corpus), "--out", str(tmp_path / "x"), "--preset", "fast", "--config", "c"
    )
    assert r.returncode == 2 and "either --config or --preset" in r.stderr


def test_fusion_shares_the_inner_index_of_feedback_children(adi, tmp_path):
    from rag.persist import load_retriever
    from retrievers import BM25Retriever, RerankFusionRetriever, RM3Retriever

    r = RerankFusionRetriever([RM3Retriever(fb_docs=5), BM25Retriever()], weights=[0.5, 1.0])
    assert r.retrievers[0].bm25 is r.retrievers[1]  # one BM25 index, two runs fused
    r.index(adi.corpus)
    before = r.retrieve_batch(adi.queries[:5], k=10)
    from rag.index import write_index
    write_index(r, tmp_path / "idx")
    from rag.index import IndexFolder

    # the follower commits no state of its own: the shared BM25 index is written once
    children = IndexFolder(tmp_path / "idx").read_manifest()["state"]["children"]
    assert children[0] == {"follower": True} and "bm25" in children[1]
    back = load_retriever(tmp_path / "idx")
    assert back.retrievers[0].bm25 is back.retrievers[1]
    after = back.retrieve_batch(adi.queries[:5], k=10)
    assert [x.ids for x in after] == [x.ids for x in before]
    # the expanded run is really fused: it differs from BM25 alone
    alone = BM25Retriever().index(adi.corpus).retrieve_batch(adi.queries, k=10)
    assert [x.ids for x in r.retrieve_batch(adi.queries, k=10)] != [x.ids for x in alone]
