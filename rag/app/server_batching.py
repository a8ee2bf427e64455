"""Dynamic batching of concurrent ``/search`` requests: one ``Pipeline.search_batch`` call for
the searches that arrived while the previous call ran.

A query encoder spends most of a single search's time on per-call work (one small forward pass,
the Python around it); eight queries encoded together cost little more than one (measured in
``bench/bench_server.py --search-batch``). Serving systems for encoders batch the same way
(Hugging Face TEI's and Triton's dynamic batching): nothing waits for a batch to fill. A request
that finds a lane free runs at once, alone; requests arriving while every lane is busy queue,
and the next free lane takes all of them (up to ``max_batch``) in one call. Under no load a
search is the single search it was; under load the batch grows with the queue.

Requests batch together only with the same ``k`` and filter (one ``search_batch`` call takes
one of each); each keeps its own query and instruction. A failing batch (one bad query) is
rerun query by query, so the error reaches only the request that caused it. A client that left
before its batch ran is skipped. Batched queries are encoded with the others in one padded
forward pass, so their vectors can differ from a lone query's in the last float bits (a near-tie
between two documents can swap); ``rag serve --search-batch 1`` serves each search alone.
"""

from __future__ import annotations

import asyncio
import contextvars
import json
from collections.abc import Awaitable, Callable
from typing import Any

from rag.core.errors import ConfigError
from rag.core.types import Query, Ranking

RunBatch = Callable[[list[Query], "int | None", "dict[str, Any] | None"], Awaitable[list[Ranking]]]


class SearchBatcher:
    """Coalesces concurrent searches into ``run_batch(queries, k, filter)`` calls.

    Args:
        run_batch: the batched search (``Pipeline.search_batch`` in the worker pool, under the
            index's read lock).
        max_batch: most queries per call (``1``: every search runs alone).
        lanes: calls running at once (each uses the encoder's threads).
    """

    def __init__(self, run_batch: RunBatch, max_batch: int = 32, lanes: int = 1) -> None:
        for name, v in (("max_batch", max_batch), ("lanes", lanes)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                flag = "--search-batch" if name == "max_batch" else name
                raise ConfigError(f"search batching: {flag} must be an int >= 1, got {v!r}")
        self.run_batch, self.max_batch, self.lanes = run_batch, max_batch, lanes
        self._queue: list[tuple[Any, Query, int | None, dict[str, Any] | None, Any]] = []
        self._busy = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self.batches = 0  # calls made, and the queries they carried (for tests and debugging)
        self.queries = 0

    async def search(self, query: Query, k: int | None, filter: dict[str, Any] | None) -> Ranking:
        if self.max_batch == 1:
            return (await self.run_batch([query], k, filter))[0]
        key = (k, json.dumps(filter, sort_keys=True, default=str) if filter else None)
        fut: asyncio.Future[Ranking] = asyncio.get_running_loop().create_future()
        self._queue.append((key, query, k, filter, fut))
        if self._busy < self.lanes:
            self._busy += 1
            # a lane serves many requests: it runs in a context of its own, not its starter's
            task = asyncio.create_task(self._lane(), context=contextvars.Context())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return await fut

    async def _lane(self) -> None:
        try:
            while self._queue:
                key = self._queue[0][0]
                batch = [x for x in self._queue if x[0] == key][: self.max_batch]
                taken = {id(x) for x in batch}
                self._queue = [x for x in self._queue if id(x) not in taken]
                batch = [x for x in batch if not x[4].done()]  # clients that left
                if batch:
                    await self._run(batch)
        finally:
            self._busy -= 1

    async def _run(self, batch: list[tuple[Any, Query, int | None, Any, Any]]) -> None:
        _, _, k, flt, _ = batch[0]
        self.batches += 1
        self.queries += len(batch)
        try:
            results = await self.run_batch([x[1] for x in batch], k, flt)
        except Exception as e:
            if len(batch) == 1:
                _settle(batch[0][4], error=e)
                return
            for x in batch:  # one bad query fails the call: each alone, its error its own
                try:
                    _settle(x[4], (await self.run_batch([x[1]], k, flt))[0])
                except Exception as e1:
                    _settle(x[4], error=e1)
            return
        for x, r in zip(batch, results, strict=True):
            _settle(x[4], r)


def _settle(fut: Any, result: Any = None, error: BaseException | None = None) -> None:
    if fut.done():  # cancelled: the client left while its batch ran
        return
    if error is not None:
        fut.set_exception(error)
    else:
        fut.set_result(result)
