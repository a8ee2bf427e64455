"""What the HTTP endpoints share (:mod:`rag.app.server`, :mod:`rag.app.openai_routes`): the
pipeline, its many-readers/one-writer lock, the limits and concurrency gates
(:mod:`rag.app.server_limits`), the running generations (cancelled at shutdown), readiness, and the
FastAPI dependency that hands the state to an endpoint."""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Annotated, Any

from rag.core.errors import RagError
from rag.core.extras import require

try:
    from fastapi import Depends, HTTPException, Request
except ImportError:
    require("fastapi", extra="serve", feature="the HTTP server")
    raise

WARM_QUERY = "warm up"
logger = logging.getLogger("ragnodes.server")


# -- state ----------------------------------------------------------------------------------------
class ReadWriteLock:
    """Many searches at once, or one index change. Not tied to threads: a streamed answer may
    acquire in one worker thread and release in another."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._readers = 0
        self._writing = False

    @contextmanager
    def reading(self) -> Iterator[None]:
        self._acquire_read()
        try:
            yield
        finally:
            self._release_read()

    def _acquire_read(self, wait: bool = True) -> bool:
        with self._cond:
            if not wait and self._writing:
                return False
            self._cond.wait_for(lambda: not self._writing)
            self._readers += 1
            return True

    def _release_read(self) -> None:
        with self._cond:
            self._readers -= 1
            self._cond.notify_all()

    @asynccontextmanager
    async def areading(self) -> AsyncIterator[None]:
        """:meth:`reading` on the event loop: waits for a writer in a thread, not on the loop;
        a waiter cancelled meanwhile releases what its thread then acquires."""
        if not self._acquire_read(wait=False):
            fut = asyncio.get_running_loop().run_in_executor(None, self._acquire_read)
            try:
                await asyncio.shield(fut)
            except asyncio.CancelledError:
                def undo(f: Any) -> None:  # acquired for a waiter that is gone
                    if not f.cancelled():
                        self._release_read()

                fut.add_done_callback(undo)
                raise
        try:
            yield
        finally:
            self._release_read()

    @contextmanager
    def writing(self) -> Iterator[None]:
        with self._cond:
            self._cond.wait_for(lambda: not self._writing and self._readers == 0)
            self._writing = True
        try:
            yield
        finally:
            with self._cond:
                self._writing = False
                self._cond.notify_all()


class ServerState:
    """What the endpoints share: the pipeline, its lock, where to save after a change."""

    def __init__(
        self,
        pipeline: Any,
        save_to: str | os.PathLike[str] | None = None,
        read_only: bool = False,
        limits: Any = None,
        search_batch: int = 32,
    ) -> None:
        from rag.app.server_batching import SearchBatcher
        from rag.app.server_limits import Limits, StageGates
        from rag.core.concurrency import default_pool
        from rag.pipeline import Pipeline

        self.pipeline = pipeline if isinstance(pipeline, Pipeline) else Pipeline(retriever=pipeline)
        self.save_to = Path(save_to) if save_to is not None else None
        self.read_only = read_only
        self.lock = ReadWriteLock()
        self.limits = limits if limits is not None else Limits()
        self.gates = StageGates(self.limits.max_concurrent)
        self.pool = default_pool()
        self.searches = SearchBatcher(self.search_batch, max_batch=search_batch)
        self.ready = False
        self.cancels: set[Any] = set()  # the running generations, cancelled at shutdown
        self.refresh_error: str | None = None  # the last failed refresh (logged once)
        if save_to is not None and self.pipeline.folder != Path(save_to):
            self.pipeline.save(save_to, config=False)  # writes commit there from now on
        if self.pipeline.session is not None and not read_only:
            self.pipeline.session.acquire()  # one writer: a second server fails at startup

    async def search_batch(
        self, queries: list[Any], k: int | None, filter: dict[str, Any] | None
    ) -> list[Any]:
        """``Pipeline.search_batch`` in the worker pool under the read lock (a read-only server
        first follows the writer): what :class:`rag.app.server_batching.SearchBatcher` calls."""
        if self.read_only:
            await self.pool.run(self.refresh)
        async with self.lock.areading():
            return await self.pool.run(self.pipeline.search_batch, queries, k, filter)

    def refresh(self) -> None:
        """A read-only server follows the writer: re-open when a newer generation is committed
        (its files are pinned by the reopened session's lease, and a commit racing the reopen is
        answered by opening the newer generation). A newer generation that cannot be opened (a
        damaged file) is logged in one line and the server keeps serving the one it has."""
        if self.read_only and self.pipeline.changed_on_disk():  # one stat per search
            with self.lock.writing():
                try:
                    if self.pipeline.refresh():
                        self.warm()
                except RagError as e:
                    now = str(e)
                    if now != self.refresh_error:  # once per distinct failure, not per search
                        logger.error("index refresh failed, serving the previous generation: %s",
                                     now)
                    self.refresh_error = now
                else:
                    self.refresh_error = None

    @property
    def size(self) -> int:
        return len(self.pipeline.retriever)

    def warm(self) -> None:
        """Run one search so that lazy state (models, an index rebuilt after a change) is built
        now, under the write lock or before serving, and never by concurrent readers."""
        if self.size:
            self.pipeline.search(WARM_QUERY, k=1)


    def load(self) -> None:
        """Load the models and build lazy indexes (:meth:`warm`); the server is ready after."""
        gen = self.pipeline.generator
        if gen is not None and callable(getattr(gen, "load", None)):
            gen.load()
        self.warm()
        self.ready = True

    def describe(self) -> dict[str, Any]:
        """What the ready line reports: index folder, generation, documents, model."""
        session = self.pipeline.session
        gen = self.pipeline.generator
        return {
            "index": str(session.path) if session is not None else "(memory)",
            "generation": getattr(session, "generation", None) if session is not None else None,
            "documents": self.size,
            "retriever": self.pipeline.retriever.name,
            "model": str(getattr(gen, "model", None) or getattr(gen, "name", "")) if gen else None,
        }

    # -- the async request plumbing ----------------------------------------------------------------
    async def stream(
        self,
        make: Callable[[], AsyncIterator[Any]],
        on_error: Callable[[BaseException], Any],
        stage: str = "generate",
    ) -> AsyncIterator[Any]:
        """Items of ``make()`` for a streamed response, under the stage's concurrency gate, this
        request's cancel (closed when the client leaves or the server stops) and the generation
        timeout; an error (a limit, a ragnodes error, a crash) becomes ``on_error(e)``."""
        from rag.core.concurrency import Cancel, cancel_scope, with_deadline
        from rag.core.errors import RagError

        cancel = Cancel()
        self.cancels.add(cancel)
        try:
            with cancel_scope(cancel):  # one consumer task iterates this: the scope is its own
                async with self.gates.enter(stage):
                    async for item in with_deadline(make(), self.limits.generation_timeout):
                        yield item
        except RagError as e:
            yield on_error(e)
        except Exception as e:
            logger.exception("unhandled error while streaming a response")
            yield on_error(e)
        finally:
            cancel.set("the response ended")
            self.cancels.discard(cancel)

    async def complete(
        self, make: Callable[[], AsyncIterator[Any]], stage: str = "generate"
    ) -> Any:
        """The last item of ``make()`` for a JSON response (the same gate, cancel and timeout as
        :meth:`stream`; errors propagate to the error handlers)."""
        from rag.core.concurrency import Cancel, cancel_scope, with_deadline

        cancel = Cancel()
        self.cancels.add(cancel)
        last = None
        try:
            with cancel_scope(cancel):
                async with self.gates.enter(stage):
                    async for item in with_deadline(make(), self.limits.generation_timeout):
                        last = item
        finally:
            cancel.set("the response ended")
            self.cancels.discard(cancel)
        return last

    def cancel_all(self, reason: str = "the server is shutting down") -> int:
        """Cancel every running generation (after the drain deadline); returns how many."""
        running = list(self.cancels)
        for c in running:
            c.set(reason)
        return len(running)


async def get_state(request: Request) -> ServerState:
    """Dependency: the :class:`ServerState` of the app serving this request (``async``: no
    threadpool round trip for an attribute read)."""
    return request.app.state.rag


async def require_ready(request: Request) -> None:
    """Dependency: 503 until the index and models are loaded (``/health/ready`` says when)."""
    if not request.app.state.rag.ready:
        raise HTTPException(
            503, "the server is still loading its index and models; poll /health/ready",
            headers={"Retry-After": "2"},
        )


State = Annotated[ServerState, Depends(get_state)]  # an endpoint's ``state: State`` parameter
