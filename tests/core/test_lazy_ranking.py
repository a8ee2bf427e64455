"""Lazy rankings (``Ranking.from_arrays``, every retriever's output): the Hit objects are built
on the first read of ``hits``; before and after, the ranking is the eager one, by every path
that reads a pydantic model (equality, copies, pickling, repr, serialisation, the server)."""

from __future__ import annotations

import copy
import pickle
import threading

import numpy as np
import pytest
from pydantic import BaseModel, TypeAdapter

from rag.core.types import Document, Hit, Query, Ranking, ScoredBatch, ScoredIds
from retrievers import BM25Retriever
from retrievers.fusion import rrf

DOCS = {
    f"d{i}": Document(id=f"d{i}", text=f"text {i}", title="t" * (i % 2), metadata={"i": i})
    for i in range(6)
}
Q = Query(text="q", id="q1")
# ties (d1, d2 at 2.0) are ordered by id; "zz" is missing from the documents and dropped
IDS, SCORES = ["d3", "d2", "d1", "zz", "d5"], np.array([1.0, 2.0, 2.0, 9.0, 0.5], np.float32)


def lazy(k: int | None = 3) -> Ranking:
    return Ranking.from_arrays(Q, IDS, SCORES, DOCS, k=k, stage="bm25")


def eager(k: int | None = 3) -> Ranking:
    pairs = [(DOCS[i], float(s)) for i, s in zip(IDS, SCORES) if i in DOCS]
    return Ranking.from_scored(Q, pairs, k=k, stage="bm25")


def is_lazy(r: Ranking) -> bool:
    return "hits" not in r.__dict__  # the hits are not built yet (rag.core.types._materialise)


def test_reads_that_need_no_hits_build_none() -> None:
    r = lazy(None)
    assert r.ids == ["d1", "d2", "d3", "d5"] and r.scores == [2.0, 2.0, 1.0, 0.5]
    assert len(r) == 4 and r.documents() == [DOCS[i] for i in r.ids]
    a = r.arrays()
    assert isinstance(a, ScoredIds) and a.scores.dtype == np.float64 and a.ids == r.ids
    assert r.top(2).ids == ["d1", "d2"] and is_lazy(r.top(2))
    c = r.model_copy(update={"provenance": {"model": "m"}})
    assert is_lazy(c) and c.provenance == {"model": "m"} and c.ids == r.ids
    assert is_lazy(r)
    assert r.hits == eager(None).hits and not is_lazy(r)  # first read builds them


@pytest.mark.parametrize(
    "view",
    [
        lambda r: r,
        lambda r: r.model_dump(),
        lambda r: r.model_dump_json(),
        lambda r: repr(r),
        lambda r: dict(r),
        lambda r: copy.copy(r),
        lambda r: copy.deepcopy(r),
        lambda r: pickle.loads(pickle.dumps(r)),
        lambda r: r.model_copy(update={"stage": "x"}).model_dump(),
        lambda r: r.model_copy(update={"hits": r.hits[:1]}).model_dump(),
        lambda r: TypeAdapter(list[Ranking]).dump_json([r]),
        lambda r: r.top(2).model_dump(),
        lambda r: r.hits[0].document,
    ],
    ids=["eq", "dump", "json", "repr", "dict", "copy", "deepcopy", "pickle", "copy-update",
         "copy-hits", "adapter", "top", "hit"],
)
def test_every_view_equals_the_eager_ranking(view) -> None:
    assert view(lazy()) == view(eager())


def test_nested_in_another_model_and_equality_both_ways() -> None:
    class Box(BaseModel):
        ranking: Ranking

    assert Box(ranking=lazy()).model_dump_json() == Box(ranking=eager()).model_dump_json()
    assert eager() == lazy() and lazy() == eager() and lazy() != lazy(2)
    assert Ranking.model_json_schema(mode="serialization")["properties"]["hits"]["type"] == "array"


def test_concurrent_first_reads_build_one_consistent_ranking() -> None:
    def read(r: Ranking, seen: list) -> None:
        seen.append(r.hits)

    for _ in range(20):
        r = lazy(None)
        seen: list = []
        threads = [threading.Thread(target=read, args=(r, seen)) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert all(h == eager(None).hits for h in seen) and r == eager(None)


def test_retrievers_and_fusion_return_lazy_rankings_equal_to_eager_ones() -> None:
    docs = [{"id": f"d{i}", "text": f"cat {'dog ' * (i % 3)}bird{i % 4}"} for i in range(30)]
    r = BM25Retriever().index(docs)
    got = r.retrieve_batch(["cat dog", "bird1", "zebra"], k=5)
    assert is_lazy(got[0]) and is_lazy(got[1]) and got[2].hits == ()  # no match: empty
    fused = rrf([got[0], got[1]], k=4)
    assert is_lazy(fused) and is_lazy(got[0]) and is_lazy(got[1])  # fusion built no hits
    for x in got:
        pairs = [(r.documents[i], s) for i, s in zip(x.ids, x.scores)]
        assert x == Ranking.from_scored(x.query, pairs, stage="bm25")
    want = rrf([Ranking(**dict(got[0])), Ranking(**dict(got[1]))], k=4)
    assert fused == want and fused.hits[0] == Hit(document=r.documents[fused.ids[0]],
                                                  score=fused.scores[0])


def test_batch_from_arrays_equals_from_arrays_per_query() -> None:
    """The batch constructor (one lookup for all ids) against the per-query one: ties, lists
    longer than k, empty lists, a missing id (the whole batch falls back), float32 scores."""
    qs = [Query(text=f"q{i}", id=f"q{i}") for i in range(5)]
    batches = [
        [ScoredIds(["d1", "d2"], np.array([2.0, 1.0], np.float32)), ScoredIds([], np.zeros(0)),
         ScoredIds(["d3", "d0", "d4"], np.array([1.5, 1.5, 0.2], np.float32)),
         ScoredIds(["d5"], np.array([0.1])), ScoredIds([], np.zeros(0))],
        [ScoredIds(["d1", "zz"], np.array([2.0, 1.0])), ScoredIds(["d2"], np.array([1.0])),
         ScoredIds([], np.zeros(0)), ScoredIds(["d3"], np.array([3.0])),
         ScoredIds(["d4"], np.array([3.0]))],
        [ScoredIds([f"d{j}" for j in range(6)], np.arange(6.0)[::-1].copy())] * 5,
    ]
    for results in batches:
        ends = np.cumsum([len(r.ids) for r in results]).tolist()
        flat = ScoredBatch([i for r in results for i in r.ids],
                           np.concatenate([np.asarray(r.scores, np.float64) for r in results]),
                           ends)  # what a kernel returns: never split into per-query arrays
        assert [list(x.ids) for x in flat] == [list(r.ids) for r in results]
        for k in (None, 1, 3, 10):
            want = [Ranking.from_arrays(q, r.ids, r.scores, DOCS, k, "s") for q, r in
                    zip(qs, results)]
            for given in (results, flat):
                got = Ranking.batch_from_arrays(qs, given, DOCS, k, "s")
                assert [(g.ids, g.scores) for g in got] == [(w.ids, w.scores) for w in want]
                assert got == want


def test_a_hybrid_over_an_opened_index_reads_only_the_documents_it_returns(
    tmp_path, monkeypatch
) -> None:
    """The children hand fusion 100 candidates each; a document store decodes a document per
    read (rag.index.docstore), so only the fused top k may be decoded, not every candidate."""
    from rag.index.docstore import DocSegment
    from rag.pipeline import Pipeline
    from retrievers import HybridRetriever

    docs = [{"id": f"d{i}", "text": f"cat dog {'bird ' * (i % 5)}fish{i % 7}"} for i in range(300)]
    hybrid = HybridRetriever([BM25Retriever(), BM25Retriever(k1=1.5, b=0.9)], depth=100)
    Pipeline(retriever=hybrid).index(docs).save(tmp_path / "idx")
    opened = Pipeline.open(tmp_path / "idx")
    reads: list[int] = []
    original = DocSegment.get
    monkeypatch.setattr(DocSegment, "get", lambda self, row: reads.append(row) or original(
        self, row))
    got = opened.search_batch(["cat bird", "dog fish3"], k=5)
    assert [len(r) for r in got] == [5, 5] and len(reads) == 10  # 2 x 100 candidates, 10 read
    fresh = HybridRetriever([BM25Retriever(), BM25Retriever(k1=1.5, b=0.9)], depth=100)
    want = Pipeline(retriever=fresh).index(docs).search_batch(["cat bird", "dog fish3"], k=5)
    assert [r.hits for r in got] == [r.hits for r in want]  # the in-memory index's answer


def test_returned_rankings_hold_their_documents_after_a_writer_deletes_them(tmp_path) -> None:
    """retrieve_batch and Pipeline.search read the returned hits' documents before returning:
    a delete committed afterwards changes no ranking a caller holds."""
    from rag.pipeline import Pipeline

    docs = [{"id": f"d{i}", "text": f"cat {'dog ' * (i % 4)}"} for i in range(40)]
    Pipeline(retriever=BM25Retriever()).index(docs).save(tmp_path / "idx")
    p = Pipeline.open(tmp_path / "idx")
    via_retriever = p.retriever.retrieve_batch(["cat dog"], k=5)[0]
    via_pipeline = p.search("cat dog", k=5)
    assert is_lazy(via_retriever) and is_lazy(via_pipeline)  # documents read, hits not built
    want = [(h.document.id, h.document.text) for h in via_pipeline.hits]
    p.delete(via_pipeline.ids)  # committed: the store no longer has them
    assert not any(i in p.retriever.documents for i in via_pipeline.ids)
    assert [(h.document.id, h.document.text) for h in via_retriever.hits] == want
    assert [(h.document.id, h.document.text) for h in via_pipeline.hits] == want
    fused = rrf([via_retriever, via_pipeline], k=5)  # fused with the documents they hold
    assert sorted((h.document.id, h.document.text) for h in fused.hits) == sorted(want)


def test_a_lazy_ranking_read_after_its_ids_were_deleted_drops_them_consistently() -> None:
    """Inside a call (a composite's children), documents are read on first use: an id gone from
    the mapping by then is dropped with its score, as from_arrays drops it."""
    source = dict(DOCS)
    r = Ranking.from_arrays(Q, ["d1", "d2", "d3"], np.array([3.0, 2.0, 1.0]), source, k=3)
    del source["d2"]
    assert r.documents() == [DOCS["d1"], DOCS["d3"]]
    assert r.ids == ["d1", "d3"] and r.scores == [3.0, 1.0] and len(r) == 2
    assert [h.document.id for h in r.hits] == ["d1", "d3"]
