"""BaseReranker owns the loop: a reranker written as one hook gets k checks, de-duplication,
query batching, the threshold / min_k / max_k cut, the stage label and provenance from the base.
The rerankers here are complete (each is one small hook), not mocks of the base."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from rag.core.errors import ConfigError, RagError
from rag.core.nodes import BaseReranker, Reranker
from rag.core.types import Document, Hit, Query, Ranking

DOCS = [Document(id=f"d{i}", text="x" * (i + 1)) for i in range(6)]


def ranking(docs: Sequence[Document] = DOCS, qid: str = "q") -> Ranking:
    return Ranking.from_scored(Query(text="q", id=qid), ((d, 0.0) for d in docs), stage="bm25")


class ByLength(BaseReranker):
    """Pointwise: longer text scores higher; records what the hook was given."""

    def __init__(self, threshold: float | None = None, min_k: int = 0) -> None:
        self.threshold = self.check_threshold(threshold)
        self.min_k = min_k
        self.seen: list[list[str]] = []

    def _score(self, query: Query, docs: list[Document]) -> Sequence[float]:
        self.seen.append([d.id for d in docs])
        return [float(len(d.text)) for d in docs]


class Reverse(BaseReranker):
    """Listwise: reverses each query's candidates, several queries per hook call."""

    def __init__(self, batch: int | None = None) -> None:
        self.query_batch_size = batch
        self.groups: list[list[str]] = []

    def provenance(self) -> dict[str, str]:
        return {"model": "m", "backend": "b", "backend_version": "1"}

    def _score_batch(self, rankings: Sequence[Ranking]) -> list[Sequence[float]]:
        self.groups.append([r.query.id for r in rankings])
        for i in range(len(rankings)):
            self.record(i)["calls"] = self.record(i).get("calls", 0) + 1
        return [self.rank_scores(list(range(len(r)))[::-1]) for r in rankings]


Reverse.name = "reverse"  # set after the class statement: a stage label, not a registered node


def test_one_pointwise_hook_gets_the_whole_contract() -> None:
    rr = ByLength()
    assert isinstance(rr, Reranker)
    r = ranking()
    dup = r.model_copy(update={"hits": (*r.hits, r.hits[2])})  # a repeated id
    empty = Ranking(query=Query(text="nothing", id="e"))
    out = rr.rerank_batch([dup, empty], k=4)
    assert rr.seen == [r.ids]  # de-duplicated, in input order; the empty ranking never sent
    assert out[0].ids == ["d5", "d4", "d3", "d2"] and out[0].scores == [6.0, 5.0, 4.0, 3.0]
    assert out[0].stage == "" and len(out[1]) == 0 and out[1].query.id == "e"
    assert dup.hits[-1] is r.hits[2]  # input untouched
    with pytest.raises(ConfigError, match="k must be >= 1"):
        rr.rerank(r, k=0)


def test_threshold_floor_and_cap_are_the_bases() -> None:
    r = ranking()
    assert ByLength(threshold=4.5).rerank(r).ids == ["d5", "d4"]
    assert ByLength(threshold=4.5, min_k=3).rerank(r).ids == ["d5", "d4", "d3"]  # min_k floor
    assert ByLength(threshold=4.5, min_k=3).rerank(r, k=1).ids == ["d5"]  # k caps the floor
    assert ByLength(threshold=99).rerank(r).ids == []
    with pytest.raises(ConfigError, match="threshold must be a number"):
        ByLength(threshold="high")  # type: ignore[arg-type]


def test_listwise_hook_groups_queries_by_position_and_labels_the_stage() -> None:
    rs = [ranking(qid="a"), Ranking(query=Query(text="e", id="e")), ranking(qid="b")]
    rs.append(ranking(DOCS[:1], qid="c"))
    rr = Reverse(batch=2)
    out = rr.rerank_batch(rs)
    assert rr.groups == [["a"], ["b", "c"]]  # groups of 2 by position; the empty one left out
    assert out[0].ids == list(reversed(rs[0].ids))
    assert out[0].scores == [6.0, 5.0, 4.0, 3.0, 2.0, 1.0]
    assert {r.stage for r in out} == {"reverse:m@b-1"}
    prov = {"model": "m", "backend": "b", "backend_version": "1"}
    once = {**prov, "calls": "1"}
    assert [r.provenance for r in out] == [once, prov, once, once]
    assert rr.rerank(rs[0]).provenance["calls"] == "1"  # per call, per query
    # the single-query hook comes for free: the documents in the given order are the prior
    assert list(rr._score(Query(text="q"), DOCS[:3])) == [1.0, 2.0, 3.0]


def test_a_hook_that_miscounts_fails_loudly() -> None:
    class Short(BaseReranker):
        def _score(self, query: Query, docs: list[Document]) -> Sequence[float]:
            return [1.0]

    with pytest.raises(RagError, match="returned 1 scores for 6 documents"):
        Short().rerank(ranking())
    with pytest.raises(NotImplementedError, match="no scoring hook"):
        BaseReranker().rerank(ranking())


def test_rank_scores_are_rank_derived() -> None:
    assert BaseReranker.rank_scores([2, 0, 1]) == [2.0, 1.0, 3.0]
    hits = tuple(Hit(document=d, score=0.0) for d in DOCS[:2])
    out = Reverse().rerank(Ranking(query=Query(text="q"), hits=hits))
    assert out.ids == ["d1", "d0"] and out.scores == [2.0, 1.0]


def test_the_rerankers_private_helpers_stay_inside_their_package() -> None:
    from test_layers import import_graph

    outside = {
        m: "rerankers._common"
        for m, deps in import_graph().items()
        if "rerankers._common" in deps and not m.startswith("rerankers")
    }
    assert outside == {}
