"""Dynamic batching of concurrent ``/search`` requests (``rag.app.server_batching``): over a real
uvicorn server and real HTTP clients, concurrent searches run as few ``search_batch`` calls and
each client gets what a lone search gives; a failing query fails only its own request."""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

pytest.importorskip("fastapi")
httpx = pytest.importorskip("httpx")

from server_procs import serving  # noqa: E402

from rag.app.demo import demo_corpus_path  # noqa: E402
from rag.app.server import create_app  # noqa: E402
from rag.app.server_batching import SearchBatcher  # noqa: E402
from rag.core.errors import ConfigError, InputError  # noqa: E402
from rag.core.types import Query, Ranking  # noqa: E402
from rag.index.persist import read_documents  # noqa: E402
from rag.pipeline import Pipeline  # noqa: E402
from retrievers import BM25Retriever  # noqa: E402

KEY = "batch-test-key-0123456789"
AUTH = {"Authorization": f"Bearer {KEY}"}


class SlowBM25(BM25Retriever):
    """BM25 whose every call takes 50 ms more, so that requests sent together overlap (the
    server's batching, not BM25, is under test); counts its calls and their queries."""


    def __init__(self, **kw) -> None:  # noqa: ANN003
        super().__init__(**kw)
        self.calls: list[int] = []

    def _search(self, queries, k, filter):  # noqa: ANN001, ANN202
        self.calls.append(len(queries))
        time.sleep(0.05)
        return super()._search(queries, k, filter)


def test_concurrent_searches_run_as_few_batches_and_equal_lone_searches() -> None:
    docs = read_documents(demo_corpus_path())
    slow = SlowBM25().index(docs)
    reference = Pipeline(retriever=BM25Retriever().index(docs), k=3)
    texts = [d.text[:50] for d in docs][:16]
    bodies = [{"query": t, "k": 3 if i % 4 else 5} for i, t in enumerate(texts)]  # two k's
    app = create_app(Pipeline(retriever=slow, k=3), api_keys=[KEY])
    start = threading.Barrier(len(bodies))

    with serving(app) as base, httpx.Client(headers=AUTH, timeout=60) as client:
        warm = len(slow.calls)  # the server's warm-up search at startup

        def post(body: dict) -> dict:
            start.wait(timeout=30)
            r = client.post(f"{base}/search", json=body)
            assert r.status_code == 200, r.text
            return r.json()

        with ThreadPoolExecutor(len(bodies)) as ex:
            got = list(ex.map(post, bodies))
    calls = slow.calls[warm:]
    batcher = app.state.rag.searches
    assert batcher.queries == len(bodies) == sum(calls)
    assert batcher.batches == len(calls) < len(bodies) // 2, calls  # batched
    assert max(calls) > 1
    for body, res in zip(bodies, got, strict=True):
        want = reference.search(body["query"], k=body["k"])
        assert [h["document"]["id"] for h in res["hits"]] == want.ids
        assert [h["score"] for h in res["hits"]] == pytest.approx(want.scores, rel=1e-6)
        assert res["query"]["text"] == body["query"]


def test_search_batch_1_serves_each_search_alone() -> None:
    docs = read_documents(demo_corpus_path())
    slow = SlowBM25().index(docs)
    app = create_app(Pipeline(retriever=slow, k=3), api_keys=[KEY], search_batch=1)
    with serving(app) as base, httpx.Client(headers=AUTH, timeout=60) as client:
        warm = len(slow.calls)
        with ThreadPoolExecutor(6) as ex:
            codes = list(ex.map(lambda t: client.post(f"{base}/search", json={"query": t})
                                .status_code, [d.text[:40] for d in docs[:6]]))
    assert codes == [200] * 6 and slow.calls[warm:] == [1] * 6
    with pytest.raises(ConfigError, match="--search-batch must be an int >= 1"):
        create_app(Pipeline(retriever=slow), api_keys=[KEY], search_batch=0)


def test_a_failing_query_fails_only_its_own_request() -> None:
    """The batch call fails when any of its queries is bad; each query is then run alone, so
    the others get their rankings and the bad one its own error."""
    calls: list[list[str]] = []

    async def run_batch(queries: list[Query], k, flt) -> list[Ranking]:  # noqa: ANN001
        calls.append([q.text for q in queries])
        await asyncio.sleep(0.02)
        if any(q.text == "bad" for q in queries):
            raise InputError("bad query")
        return [Ranking(query=q, stage=f"k={k}") for q in queries]

    async def main() -> list:
        b = SearchBatcher(run_batch, max_batch=8)
        texts = ["a", "b", "bad", "c", "d"]
        return await asyncio.gather(
            *(b.search(Query(text=t), 3, None) for t in texts), return_exceptions=True
        )

    got = asyncio.run(main())
    assert [g.query.text for g in got if isinstance(g, Ranking)] == ["a", "b", "c", "d"]
    assert isinstance(got[2], InputError) and str(got[2]) == "bad query"
    assert calls[0] == ["a", "b", "bad", "c", "d"]  # sent together: one batch, which failed
    assert calls[1:] == [["a"], ["b"], ["bad"], ["c"], ["d"]]  # then each alone


def test_a_client_that_left_is_skipped_and_different_filters_do_not_mix() -> None:
    seen: list[tuple[list[str], object]] = []

    async def run_batch(queries: list[Query], k, flt) -> list[Ranking]:  # noqa: ANN001
        seen.append(([q.text for q in queries], flt))
        await asyncio.sleep(0.02)
        return [Ranking(query=q) for q in queries]

    async def main() -> None:
        b = SearchBatcher(run_batch)
        first = asyncio.ensure_future(b.search(Query(text="first"), 3, None))
        await asyncio.sleep(0)  # the first runs; the next ones queue
        gone = asyncio.ensure_future(b.search(Query(text="gone"), 3, None))
        rest = [asyncio.ensure_future(b.search(Query(text=t), 3, f)) for t, f in
                (("x", {"a": 1}), ("y", None), ("z", {"a": 1}))]
        await asyncio.sleep(0)
        gone.cancel()
        await asyncio.gather(first, *rest)

    asyncio.run(main())
    assert seen == [(["first"], None), (["y"], None), (["x", "z"], {"a": 1})]
