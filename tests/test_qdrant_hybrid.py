"""QdrantHybridRetriever: BM25 sparse vectors equal bm25s, the engine-side hybrid equals the
in-process one, a collection written by another process serves at once, settings pass through."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("qdrant_client")

from conftest import ROOT, dataset_dir  # noqa: E402
from tolerance import assert_rankings_match  # noqa: E402

from rag.types import Query, Ranking  # noqa: E402
from retrievers import BM25Retriever, DenseRetriever, QdrantHybridRetriever, rrf  # noqa: E402
from retrievers.stores.qdrant import QdrantLockedError, QdrantUnavailableError  # noqa: E402


def ndcg10(qrels: dict, runs: dict[str, list[str]]) -> float:
    import pytrec_eval

    run = {q: {d: float(len(ids) - i) for i, d in enumerate(ids)} for q, ids in runs.items()}
    for q in qrels:
        run.setdefault(q, {})
    ev = pytrec_eval.RelevanceEvaluator(qrels, {"ndcg_cut.10"}).evaluate(run)
    return float(np.mean([v["ndcg_cut_10"] for v in ev.values()]))


def sparse_only(docs, **kw) -> QdrantHybridRetriever:  # noqa: ANN001
    """A collection whose dense vectors are placeholders: only BM25 is searched."""
    r = QdrantHybridRetriever(collection="bm25", **kw)
    return r.index_vectors(docs, np.ones((len(docs), 4), np.float32))


def check_bm25_parity(ds, r: QdrantHybridRetriever, ref: BM25Retriever) -> None:  # noqa: ANN001
    texts = [q.text for q in ds.queries]
    got = r.bm25_search(texts, k=10)
    want = ref.retrieve_batch(ds.queries, k=10)
    same = 0
    for g, w in zip(got, want, strict=True):
        # bm25s also returns zero-score (non-matching) documents; Qdrant returns matches only
        w_ids = [h.id for h in w.hits if h.score > 0]
        same += [i for i, _ in g] == w_ids
        ws = dict(zip(w.ids, w.scores, strict=True))
        assert all(abs(ws[i] - s) < 1e-4 for i, s in g if i in ws)
    assert same >= 0.99 * len(texts), f"same top-10 on {same}/{len(texts)} queries"
    a = ndcg10(ds.qrels, {q.id: [i for i, _ in g] for q, g in zip(ds.queries, got, strict=True)})
    b = ndcg10(ds.qrels, {q.id: w.ids for q, w in zip(ds.queries, want, strict=True)})
    assert abs(a - b) <= 0.002


def load(name: str):  # noqa: ANN201
    from evals.datasets import load_beir

    return load_beir(dataset_dir(name))


@pytest.mark.parametrize("name", ["adi", "med"])
def test_bm25_sparse_vectors_rank_as_bm25s(name):
    ds = load(name)
    check_bm25_parity(ds, sparse_only(ds.corpus), BM25Retriever().index(ds.corpus))


@pytest.mark.slow
@pytest.mark.parametrize("name", ["cisi", "cranfield", "scifact"])
def test_bm25_sparse_vectors_rank_as_bm25s_slow(name):
    ds = load(name)
    check_bm25_parity(ds, sparse_only(ds.corpus), BM25Retriever().index(ds.corpus))


def test_avgdl_kept_current_as_documents_come_and_go():
    ds = load("adi")
    docs = ds.corpus
    # two batches without re-weighting: the first batch's weights used the first half's avgdl
    r = sparse_only(docs[:41], reweight_tolerance=None)
    r.index_vectors(docs[41:], np.ones((41, 4), np.float32))
    ref = BM25Retriever().index(docs)
    stale = r.bm25_search([q.text for q in ds.queries], k=10)
    fresh = ref.retrieve_batch(ds.queries, k=10)
    assert any(
        abs(dict(zip(w.ids, w.scores))[i] - s) > 1e-4
        for g, w in zip(stale, fresh)
        for i, s in g
        if i in w.ids
    ), "the halves' avgdl should differ"
    assert r.reweight() == len(docs)
    check_bm25_parity(ds, r, ref)
    # the default tolerance re-weights by itself; deletions update the statistics too
    auto = sparse_only(docs[:41])
    auto.index_vectors(docs[41:], np.ones((41, 4), np.float32))
    check_bm25_parity(ds, auto, ref)
    assert auto.delete([d.id for d in docs[:20]] + ["missing"]) == 20
    check_bm25_parity(ds, auto, BM25Retriever().index(docs[20:]))
    assert len(auto) == len(docs) - 20 and auto.documents == {}


def test_hybrid_equals_in_process_rrf(minilm):
    ds = load("adi")
    q = QdrantHybridRetriever(encoder=minilm).index(ds.corpus)
    bm25 = BM25Retriever().index(ds.corpus)
    dense = DenseRetriever(encoder=minilm).index(ds.corpus)
    got = q.retrieve_batch(ds.queries, k=10)
    b, d = bm25.retrieve_batch(ds.queries, k=100), dense.retrieve_batch(ds.queries, k=100)
    # HybridRetriever's RRF (k=60) over the same two lists, BM25's zero-score hits dropped
    want = [
        rrf([x.model_copy(update={"hits": tuple(h for h in x.hits if h.score > 0)}), y], 10)
        for x, y in zip(b, d, strict=True)
    ]
    for g, w in zip(got, want, strict=True):
        assert g.ids == w.ids
        assert g.scores == pytest.approx(w.scores, abs=1e-6)
    # one request per query carries the filter in every prefetch
    req = q.requests(["moons"], 10, {"year": 1})[0]
    assert req.filter is not None and all(p.filter == req.filter for p in req.prefetch)
    assert req.query.rrf.k == 61  # Qdrant ranks from 0


def test_maxsim_rescoring_equals_late_interaction_reranker(demo_docs, minilm):
    from rerankers import LateInteractionReranker
    from retrievers.multivector import MuveraFDE, TokenEncoder

    tok = TokenEncoder()
    q = QdrantHybridRetriever(encoder=minilm, token_encoder=tok).index(demo_docs)
    bm25 = BM25Retriever().index(demo_docs)
    dense = DenseRetriever(encoder=minilm).index(demo_docs)
    late = LateInteractionReranker(encoder=tok)
    queries = ["Which planet is the largest?", "moons of Mars", "telescope launched in 1990"]
    for text in queries:
        b, d = bm25.retrieve(text, k=100), dense.retrieve(text, k=100)
        b = b.model_copy(update={"hits": tuple(h for h in b.hits if h.score > 0)})
        every = late.rerank(rrf([b, d], 100))
        want = every.top(5)
        got = q.retrieve(text, k=5)
        # the reranker rounds tokens to fp16 (scores within 2e-2); near-ties compared as sets
        assert_rankings_match(got.ids, got.scores, want.ids, want.scores, 2e-2,
                              dict(zip(every.ids, every.scores, strict=True)))
    fde = QdrantHybridRetriever(
        encoder=minilm, token_encoder=tok, fde=MuveraFDE(k_sim=2, r_reps=2, d_proj=8)
    ).index(demo_docs)
    r = fde.retrieve("moons of Mars", k=3)
    assert len(r.ids) == 3 and "mars" in r.ids
    assert len(fde.requests(["moons"], 3)[0].prefetch.prefetch) == 3  # dense, bm25, fde


CONFIG = """\
type: qdrant_hybrid
collection: docs
path: {path}
filter_fields: {{topic: keyword}}
"""


def test_collection_written_by_another_process_serves_at_once(tmp_path, demo_docs, minilm):
    """`rag index --config` (a separate process) writes the collection and exits; this process
    opens it and gets the same results as an index built here, holding no documents itself."""
    cfg = tmp_path / "qdrant.yaml"
    cfg.write_text(CONFIG.format(path=tmp_path / "qdrant"), encoding="utf-8")
    from rag.cli import demo_corpus_path

    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "rag.cli",
            "index",
            str(demo_corpus_path()),
            "--config",
            str(cfg),
            "--out",
            str(tmp_path / "idx"),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
        cwd=ROOT,
    )
    assert out.returncode == 0, out.stderr
    from rag.index import IndexFolder

    # nothing process-local: the index folder's document store is empty, Qdrant holds the corpus
    manifest = IndexFolder(tmp_path / "idx").read_manifest()
    assert sum(s["n"] for s in manifest["docs"]["segments"]) == 0

    ref = QdrantHybridRetriever(encoder=minilm, collection="docs").index(demo_docs)
    from rag.pipeline import Pipeline

    opened = Pipeline.open(tmp_path / "idx").retriever
    assert len(opened) == len(demo_docs) and opened.documents == {}
    qs = [
        Query(id=f"q{i}", text=t)
        for i, t in enumerate(
            ["Which planet is the largest?", "moons of Mars", "telescope launched in 1990"]
        )
    ]
    for a, b in zip(opened.retrieve_batch(qs, k=5), ref.retrieve_batch(qs, k=5), strict=True):
        assert a.ids == b.ids and a.scores == pytest.approx(b.scores, abs=1e-6)
        assert [h.document for h in a.hits] == [h.document for h in b.hits]
    assert opened.get_documents(["jupiter"])[0] == {d.id: d for d in demo_docs}["jupiter"]
    # the folder is locked while open: a second client gets one clear line
    with pytest.raises(QdrantLockedError, match="open in another client"):
        len(QdrantHybridRetriever(path=str(tmp_path / "qdrant"), collection="docs"))
    opened.close()
    again = QdrantHybridRetriever(path=str(tmp_path / "qdrant"), collection="docs", encoder=minilm)
    assert again.retrieve(qs[0], k=5).ids == ref.retrieve(qs[0], k=5).ids
    again.close()


def test_unreachable_server_is_one_line():
    r = QdrantHybridRetriever(url="http://127.0.0.1:9", collection="x")
    with pytest.raises(QdrantUnavailableError) as e:
        r.retrieve("anything")
    assert "cannot reach the Qdrant server at 'http://127.0.0.1:9'" in str(e.value)
    assert "\n" not in str(e.value)
    from retrievers.stores import QdrantStore

    with pytest.raises(QdrantUnavailableError):
        QdrantStore(url="http://127.0.0.1:9").search(np.zeros((1, 4)), 3)


def test_cluster_settings_pass_through():
    from rag.errors import ConfigError
    from retrievers.qdrant_schema import collection_config

    r = QdrantHybridRetriever(
        url="http://qdrant:6333",
        shard_number=6,
        replication_factor=2,
        write_consistency_factor=2,
        on_disk=True,
        quantization="binary",
        hnsw_m=32,
        filter_fields={"year": "integer"},
    )
    cfg = collection_config(r, 384, tok_dim=128, fde_dim=512)
    assert (cfg["shard_number"], cfg["replication_factor"], cfg["write_consistency_factor"]) == (
        6,
        2,
        2,
    )
    dense = cfg["vectors_config"]["dense"]
    assert (
        dense.on_disk and dense.quantization_config.binary is not None and dense.hnsw_config.m == 32
    )
    assert cfg["vectors_config"]["colbert"].hnsw_config.m == 0  # re-scoring only, no graph
    assert cfg["sparse_vectors_config"]["bm25"].modifier.value == "idf"
    assert QdrantHybridRetriever.from_config(r.to_config()) == r
    with pytest.raises(ConfigError, match="quantization needs a Qdrant server"):
        QdrantHybridRetriever(quantization="int8")
    with pytest.raises(ConfigError, match="filter_fields"):
        QdrantHybridRetriever(filter_fields={"x": "text"})
    with pytest.raises(ConfigError, match="fusion"):
        QdrantHybridRetriever(fusion="sum")


def test_dbsf_and_local_settings_search(demo_docs, minilm):
    r = QdrantHybridRetriever(
        encoder=minilm, fusion="dbsf", shard_number=2, replication_factor=1, on_disk=True
    ).index(demo_docs)
    top = r.retrieve("Which planet is the largest?", k=3)
    assert isinstance(top, Ranking) and "jupiter" in top.ids


def test_bm25_search_results_are_sorted_and_filtered(demo_docs):
    r = sparse_only(demo_docs)
    assert r.bm25_search(["the of and"], k=5) == [[]]  # stopwords only
    hits = r.bm25_search(["planet"], k=50)[0]
    assert hits == sorted(hits, key=lambda h: (-h[1], h[0])) and hits
    assert json.dumps(r.to_config())  # JSON-safe


def test_in_memory_collection_saves_and_loads(tmp_path, demo_docs):
    from rag.persist import load_retriever

    r = sparse_only(demo_docs)
    want = r.bm25_search(["moons of Mars", "largest planet"], k=5)
    from rag.index import write_index
    write_index(r, tmp_path / "idx")
    loaded = load_retriever(tmp_path / "idx")
    assert loaded.bm25_search(["moons of Mars", "largest planet"], k=5) == want
    assert len(loaded) == len(demo_docs)
    loaded.close()
