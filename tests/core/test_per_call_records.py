"""Per-call records travel in the output, never on the node: one node shared by concurrent
requests (the server's case) gives each output its own record.

Every thread waits at a barrier *inside* the hook, so all calls are in flight at once; a record
kept on the node (the former ``self.last_run``) would be overwritten by another thread's call
before it is read back, and the checks below would see another query's record.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from rag.core.nodes import BaseReranker, BaseRetriever
from rag.core.types import Document, Query, Ranking

THREADS = 8


def ranking(n: int, qid: str) -> Ranking:
    docs = [Document(id=f"d{i}", text=f"value {(i * 7) % n}") for i in range(n)]
    q = Query(text=f"query {qid}", id=qid)
    return Ranking.from_scored(q, ((d, float(n - i)) for i, d in enumerate(docs)))


class Waiting(BaseReranker):
    """Pointwise: records its query and document count, after every call has started."""

    def __init__(self) -> None:
        self.barrier = threading.Barrier(THREADS, timeout=30)

    def _score(self, query: Query, docs: list[Document]) -> Sequence[float]:
        rec = self.record()
        rec["query"] = query.id
        self.barrier.wait()  # every other thread is now inside its own call
        rec["docs"] = len(docs)
        return [float(len(d.text)) for d in docs]


class WaitingRetriever(BaseRetriever):
    """Records in ``_search`` (a retriever's hook), after every call has started."""

    def __init__(self) -> None:
        self.barrier = threading.Barrier(THREADS, timeout=30)

    def _add(self, docs: list[Document]) -> None:
        pass

    def _search(self, queries, k, filter):  # noqa: ANN001
        for i, q in enumerate(queries):
            self.record(i)["query"] = q.id
        self.barrier.wait()
        for i in range(len(queries)):
            self.record(i)["calls"] = 1
        return [[(d, 1.0) for d in sorted(self.documents)[:k]] for _ in queries]


def run_all(fn, n: int = THREADS) -> list:
    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(fn, range(n)))


def test_concurrent_reranks_on_one_node_keep_their_own_records() -> None:
    rr = Waiting()
    out = run_all(lambda i: rr.rerank(ranking(3 + i, f"q{i}")))
    for i, r in enumerate(out):
        assert r.query.id == f"q{i}"
        assert r.provenance == {"query": f"q{i}", "docs": str(3 + i)}
    assert not [a for a in vars(rr) if a.startswith("last")]  # nothing per call on the node


def test_concurrent_listwise_calls_count_their_own_windows() -> None:
    from tests.nodes.test_rerankers_llm import Sorting

    rr = Sorting(window=4, step=2).load()
    real = rr.lm.generate
    barrier = threading.Barrier(THREADS, timeout=30)
    first: set[int] = set()
    lock = threading.Lock()

    def generate(prompts, *a, **kw):  # noqa: ANN001, ANN002, ANN003
        me = threading.get_ident()
        with lock:
            wait = me not in first
            first.add(me)
        if wait:
            barrier.wait()  # every call has started its first window
        return real(prompts, *a, **kw)

    rr.lm.generate = generate
    sizes = [5, 6, 8, 9, 10, 11, 12, 13]  # prime to 7: the values are a permutation
    out = run_all(lambda i: rr.rerank(ranking(sizes[i], f"q{i}")))
    for n, r in zip(sizes, out, strict=True):
        assert r.provenance["windows"] == str(len(rr.plan(n)))
        assert len(r.provenance["outputs"]) == len(rr.plan(n))
        top = [int(h.document.text.split()[1]) for h in r.hits[:2]]
        assert top == [n - 1, n - 2]  # one bottom-up pass fixes the top `step` ranks


def test_concurrent_searches_on_one_retriever_keep_their_own_records() -> None:
    r = WaitingRetriever().index([Document(id=f"d{i}", text="x") for i in range(5)])
    out = run_all(lambda i: r.retrieve(Query(text="x", id=f"q{i}"), k=2))
    assert [o.provenance for o in out] == [{"query": f"q{i}", "calls": "1"} for i in range(THREADS)]
