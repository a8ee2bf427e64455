"""The retriever base owns the request: one check of k, queries and filter for every retriever
type (composites included: a query inside a hybrid of a hybrid is checked once), one candidate
depth policy, and a composite is one hook (tests/composite_example.py passes the contract suite).
The pipeline takes the typed ``rag.app.api.Filter`` as well as a dict."""

from __future__ import annotations

import inspect

import pytest
from test_contract import RETRIEVERS

from rag.core.errors import ConfigError
from rag.core.types import Document, Query

BAD_QUERY = Query(id="bad", text=" \n ")
QUERY_ERROR = "query 'bad' has empty text; pass a non-empty question"
BAD_FILTER = {"year": {"between": 1}}
FILTER_ERROR = (  # the one filter parser's message (rag.core.filters)
    "filter on 'year': unknown operator 'between'; use one of $eq, $ne, $in, $nin, $gt, $gte, "
    "$lt, $lte, $exists"
)


@pytest.mark.parametrize("name", sorted(RETRIEVERS))
def test_every_retriever_rejects_a_bad_request_with_the_same_error(name):
    r = RETRIEVERS[name]()
    for call in (
        lambda: r.retrieve(BAD_QUERY, k=3),
        lambda: r.retrieve_batch([Query(id="ok", text="fine"), BAD_QUERY], k=3),
    ):
        with pytest.raises(ConfigError) as e:
            call()
        assert str(e.value) == QUERY_ERROR
    with pytest.raises(ConfigError) as e:
        r.retrieve("moons", k=3, filter=BAD_FILTER)
    assert str(e.value) == FILTER_ERROR
    with pytest.raises(ConfigError, match=r"^filter must be a dict, got list$"):
        r.retrieve("moons", k=3, filter=[("year", 1)])  # type: ignore[arg-type]


def test_a_filter_is_refused_at_the_edge_when_a_child_cannot_apply_it(demo_docs):
    from retrievers import BM25Retriever, HybridRetriever
    from retrievers.anncur import AnnCurRetriever

    anncur = AnnCurRetriever(n_anchor_queries=4, n_anchor_items=2, budget=4)
    with pytest.raises(ConfigError, match=r"^anncur does not support metadata filters"):
        anncur.retrieve("moons", filter={"year": 2000})
    hybrid = HybridRetriever([BM25Retriever(), anncur])
    assert not hybrid.supports_filter
    with pytest.raises(ConfigError, match=r"^hybrid does not support metadata filters"):
        hybrid.retrieve("moons", filter={"year": 2000})  # before anything is scored


def test_a_query_is_checked_once_however_deep_the_composite(demo_docs, monkeypatch):
    import rag.core.nodes
    from retrievers import BM25Retriever, HybridRetriever, RerankFusionRetriever

    inner = HybridRetriever([BM25Retriever(), BM25Retriever(k1=1.2, b=0.75)])
    outer = RerankFusionRetriever([inner, BM25Retriever(stemmer=None)], method="score")
    outer.index(demo_docs)
    seen: list[str] = []
    real = rag.core.nodes.check_query

    def counting(q):
        seen.append(getattr(q, "id", q))
        return real(q)

    monkeypatch.setattr(rag.core.nodes, "check_query", counting)
    qs = [Query(id="q1", text="largest planet"), Query(id="q2", text="moons of Mars")]
    got = outer.retrieve_batch(qs, k=5)
    assert seen == ["q1", "q2"]  # the outer node checked each query; no child checked again
    assert [r.query for r in got] == qs and all(r.stage == "rerank_fusion" for r in got)
    assert "jupiter" in got[0].ids
    from rag.pipeline import Pipeline

    seen.clear()
    piped = Pipeline(retriever=outer, k=5).search_batch(qs)
    assert seen == ["q1", "q2"]  # the pipeline's check is the retriever's, made once
    assert [r.ids for r in piped] == [r.ids for r in got]


def test_one_candidate_depth_policy(demo_docs):
    from rag.core.nodes import candidate_depth
    from retrievers import BM25Retriever, HybridRetriever

    assert candidate_depth(10) == 100 and candidate_depth(500) == 500
    assert candidate_depth(10, 20) == 20 and candidate_depth(10, 3) == 10
    assert candidate_depth(5, None, default=50) == 50
    # a hybrid configured shallower than k still asks each child for k candidates
    bm25 = BM25Retriever()
    shallow = HybridRetriever([bm25], depth=2).index(demo_docs)
    want = bm25.retrieve("planet", k=6).ids
    assert len(want) == 6
    assert sorted(shallow.retrieve("planet", k=6).ids) == sorted(want)


def test_the_example_composite_is_one_hook():
    from composite_example import CombMNZRetriever

    from retrievers.composite import CompositeRetriever

    own = {n for n, v in vars(CombMNZRetriever).items() if inspect.isfunction(v)}
    assert own == {"__init__", "_fuse"}
    assert issubclass(CombMNZRetriever, CompositeRetriever)
    assert "combmnz-example" in RETRIEVERS  # so the contract suite runs it


def test_composites_share_one_document_store(demo_docs):
    from retrievers import BM25Retriever, DenseRetriever, HybridRetriever

    h = HybridRetriever([BM25Retriever(), DenseRetriever()]).index(demo_docs[:5])
    assert all(c.documents is h.documents for c in h.children)
    h.index([Document(id="new", text="a new moon of Jupiter")])
    h.delete([demo_docs[0].id])
    assert all(c.documents is h.documents for c in h.children)
    assert "new" in h.retrieve("new moon Jupiter", k=3).ids


def test_instruction_use_is_any_part(demo_docs):
    from retrievers import BM25Retriever, DenseRetriever, HybridRetriever, RerankFusionRetriever

    assert not HybridRetriever([BM25Retriever()]).uses_instruction
    dense = DenseRetriever()
    assert HybridRetriever([BM25Retriever(), dense]).uses_instruction == dense.uses_instruction

    class Instructed:  # any reranker node that reads the instruction
        uses_instruction = True

        def rerank_batch(self, rankings, k=None):
            return list(rankings)

        def load(self):
            return self

    fused = RerankFusionRetriever([BM25Retriever()], [Instructed()])
    assert fused.uses_instruction


def test_the_pipeline_takes_the_typed_filter(demo_docs):
    from rag.app.api import SearchRequest
    from rag.pipeline import Pipeline
    from retrievers import BM25Retriever

    docs = [
        d.model_copy(update={"metadata": {**d.metadata, "year": 1990 + i}})
        for i, d in enumerate(demo_docs)
    ]
    pipe = Pipeline(retriever=BM25Retriever(), k=5).index(docs)
    plain = pipe.search("planet moons", filter={"year": {"gte": 2005}, "topic": ["astronomy"]})
    typed_filter = SearchRequest(
        query="planet moons", filter={"year": {"gte": 2005}, "topic": ["astronomy"]}
    ).filter  # parsed by the request model into the canonical form
    typed = pipe.search("planet moons", filter=typed_filter)
    assert plain.ids == typed.ids and plain.scores == typed.scores and len(plain.ids) > 0
    assert all(h.document.metadata["year"] >= 2005 for h in typed.hits)
    req = SearchRequest(query="planet moons", k=5, filter={"year": {"gte": 2005}})
    assert req.filter == {"year": {"$gte": 2005}}  # canonical: every condition an operator dict
    assert pipe.search_batch([req.query], req.k, req.filter)[0].ids == pipe.search(
        "planet moons", filter={"year": {"gte": 2005}}
    ).ids
    with pytest.raises(ConfigError, match="unknown operator 'between'"):
        pipe.search("planet", filter=BAD_FILTER)
