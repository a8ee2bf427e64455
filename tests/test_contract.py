"""One contract suite for every retriever and reranker (see the rag.nodes module docstring).

Every registered retriever/reranker must have a factory here: a new node cannot skip the suite.
"""

from __future__ import annotations

import importlib.util
import math

import pytest
from tolerance import assert_same_ranking

from rag.nodes import REGISTRY, Node, _import_all_nodes
from rag.types import Document, Query, Ranking

_import_all_nodes()


def _bm25():
    from retrievers import BM25Retriever

    return BM25Retriever()


def _dense(minilm=None):
    from retrievers import DenseRetriever

    return DenseRetriever()


def _dense_qdrant():
    from retrievers import DenseRetriever, QdrantStore

    return DenseRetriever(store=QdrantStore(collection="contract"))


def _dense_binary():
    from retrievers import DenseRetriever
    from retrievers.stores import ExactStore

    return DenseRetriever(store=ExactStore(quantization="binary", dims=256))


def _dense_qdrant_edge():
    from retrievers import DenseRetriever
    from retrievers.stores import QdrantEdgeStore

    return DenseRetriever(store=QdrantEdgeStore(quantization="binary"))


def _hybrid():
    from retrievers import BM25Retriever, DenseRetriever, HybridRetriever

    return HybridRetriever([BM25Retriever(), DenseRetriever()])


def _hybrid_score():
    from retrievers import BM25Retriever, DenseRetriever, HybridRetriever

    return HybridRetriever([DenseRetriever(), BM25Retriever()], method="score", weights=[0.7, 0.3])


RETRIEVERS = {
    "bm25": _bm25,
    "dense": _dense,
    "dense+qdrant": _dense_qdrant,
    "dense+binary": _dense_binary,
    "hybrid": _hybrid,
    "hybrid-score": _hybrid_score,
}
if importlib.util.find_spec("qdrant_edge") is not None:  # the qdrant-edge extra
    RETRIEVERS["dense+qdrant-edge"] = _dense_qdrant_edge
try:  # multi-vector retrievers (retrievers.multivector)
    from contract_factories import EXTRA_RERANKERS, EXTRA_RETRIEVERS, UNTRAINED
except ImportError:  # pragma: no cover
    EXTRA_RETRIEVERS, EXTRA_RERANKERS, UNTRAINED = {}, {}, set()
RETRIEVERS.update(EXTRA_RETRIEVERS)
RERANKERS = dict(EXTRA_RERANKERS)

# batch vs one-by-one scores: the encoders' float32 noise (<= 6e-7 on MiniLM's unit vectors,
# a batch pads and multiplies other shapes) and BM25/fusion sums of a few terms (<= ~20 ulps at
# score ~10, 2e-5) stay far below it; near-ties inside it are compared as sets
CONTRACT_TOL = 1e-4

QUERIES = [
    Query(id="q1", text="Which planet is the largest?"),
    Query(id="q2", text="moons of Mars"),
    Query(id="q3", text="telescope launched in 1990"),
    Query(id="q4", text="zzzz qqqq"),  # no lexical match at all
]


def check_ranking(r: Ranking, k: int, pool: set[str]) -> None:
    assert len(r.hits) <= k
    assert len(set(r.ids)) == len(r.ids), "duplicate ids"
    assert set(r.ids) <= pool
    assert all(math.isfinite(s) for s in r.scores)
    keys = [(-h.score, h.id) for h in r.hits]
    assert keys == sorted(keys), "not sorted by score desc, id asc"


def test_every_registered_node_is_covered():
    kinds = {n: c.kind for n, c in REGISTRY.items()}
    retrievers = {n for n, kind in kinds.items() if kind == "retriever"}
    rerankers = {n for n, kind in kinds.items() if kind == "reranker"}
    covered_r = {RETRIEVERS[f]().name for f in RETRIEVERS}
    from test_rerankers_contract import FACTORIES

    covered_rr = {RERANKERS[f]().name for f in RERANKERS} | set(FACTORIES)
    assert retrievers <= covered_r, (
        f"retrievers without a contract factory: {retrievers - covered_r}"
    )
    assert rerankers <= covered_rr, (
        f"rerankers without a contract factory: {rerankers - covered_rr}"
    )


@pytest.fixture(scope="module", params=sorted(RETRIEVERS))
def indexed(request, demo_docs):
    r = RETRIEVERS[request.param]()
    r.index(demo_docs)
    return r


def test_retriever_contract(indexed, demo_docs):
    pool = {d.id for d in demo_docs}
    before = [q.model_copy() for q in QUERIES]
    full = [indexed.retrieve(q, k=1000) for q in QUERIES]
    for k in (1, 3, 10):
        batch = indexed.retrieve_batch(QUERIES, k=k)
        single = [indexed.retrieve(q, k=k) for q in QUERIES]
        for b, s, every in zip(batch, single, full):
            check_ranking(b, k, pool)
            # batch vs one-by-one: other padding and BLAS shapes (MiniLM vectors move by <= 6e-7,
            # BM25 sums in another order by a few ulps x terms); ids exact outside near-ties
            scores = dict(zip(every.ids, every.scores))
            assert_same_ranking(b, s, CONTRACT_TOL, scores)
        # the same call again: bit-exact by construction (same inputs, shapes and code path)
        assert [r.ids for r in indexed.retrieve_batch(QUERIES, k=k)] == [r.ids for r in batch]
    assert QUERIES == before, "queries were mutated"
    if indexed.name not in UNTRAINED:
        top = indexed.retrieve(QUERIES[0], k=3)
        assert "jupiter" in top.ids


def test_k_larger_than_corpus(indexed, demo_docs):
    r = indexed.retrieve(QUERIES[1], k=1000)
    check_ranking(r, 1000, {d.id for d in demo_docs})
    if getattr(indexed, "matching_only", False):  # only documents sharing a term
        assert 0 < len(r) <= len(demo_docs) and all(s > 0 for s in r.scores)
    else:
        assert len(r) == len(demo_docs)


def test_bad_input(indexed):
    from rag.errors import ConfigError

    with pytest.raises(ConfigError, match="k must be >= 1, got 0"):
        indexed.retrieve("x", k=0)
    with pytest.raises(ConfigError, match="empty text"):
        indexed.retrieve("   ")


@pytest.mark.parametrize("name", sorted(RETRIEVERS))
def test_empty_corpus_and_config_roundtrip(name):
    r = RETRIEVERS[name]()
    assert r.retrieve("anything", k=5).hits == ()
    assert r.retrieve_batch([], k=5) == []
    cfg = r.to_config()
    import json

    rebuilt = Node.from_config(json.loads(json.dumps(cfg)))
    assert rebuilt.to_config() == cfg
    assert type(rebuilt) is type(r)


@pytest.mark.parametrize("name", sorted(RETRIEVERS))
def test_save_load_roundtrip(name, demo_docs, tmp_path):
    from rag.persist import load_retriever

    r = RETRIEVERS[name]()
    r.index(demo_docs[:12])
    from rag.index import write_index
    write_index(r, tmp_path / "idx")
    loaded = load_retriever(tmp_path / "idx")
    a = r.retrieve_batch(QUERIES, k=5)
    b = loaded.retrieve_batch(QUERIES, k=5)
    assert [x.ids for x in a] == [x.ids for x in b]
    # the loaded index keeps working incrementally: add, replace, delete
    loaded.index([Document(id="new", text="Jupiter largest planet giant gas giant Jupiter")])
    assert (
        "new" in loaded.retrieve("largest planet Jupiter", k=3 if name not in UNTRAINED else 30).ids
    )
    loaded.delete(["new"])
    assert "new" not in loaded.retrieve("largest planet Jupiter", k=30).ids


@pytest.fixture(scope="module")
def candidates(demo_docs):
    from retrievers import BM25Retriever

    return BM25Retriever().index(demo_docs).retrieve_batch(QUERIES[:3], k=8)


@pytest.mark.parametrize("name", sorted(RERANKERS))
def test_reranker_contract(name, candidates):
    rr = RERANKERS[name]()
    for k in (None, 3):
        batch = rr.rerank_batch(candidates, k=k)
        single = [rr.rerank(c, k=k) for c in candidates]
        every = [rr.rerank(c) for c in candidates]
        for c, b, s, e in zip(candidates, batch, single, every):
            check_ranking(b, k or len(c), set(c.ids))
            assert_same_ranking(b, s, CONTRACT_TOL, dict(zip(e.ids, e.scores)))
            assert b.query == c.query
    empty = Ranking(query=QUERIES[0])
    assert rr.rerank(empty).hits == ()
    cfg = rr.to_config()
    assert Node.from_config(cfg).to_config() == cfg
