"""What the async API (:meth:`rag.pipeline.Pipeline.asearch` / ``aask`` / ``astream``) and the
server run on: a bounded pool for CPU-bound stages, cancellation that reaches a generator's token
loop, and a bridge from a blocking iterator to an async one.

* :class:`WorkerPool` -- ``size`` daemon threads (numpy and torch release the GIL, so searches
  run in parallel); ``await pool.run(fn, ...)`` runs ``fn`` there with the caller's
  ``contextvars`` (OpenTelemetry's current span among them). Daemon threads: a process that was
  told to stop is never held by a search still running.
* :class:`Cancel` -- one request's cancellation: an event that token loops check once per token
  (:class:`rag.core.llm.hf.TransformersLLM` stops decoding at the next step, the base generator
  closes its source) and the count of tokens they made. :func:`cancel_scope` makes it current.
* :func:`aiterate` -- a blocking iterator (a generator's ``stream``) read in its own thread and
  handed to the event loop piece by piece; when the consumer stops (client gone, timeout,
  shutdown) the cancel is set and the thread ends at its next token.
* :func:`with_deadline` -- an async iterator that must finish within ``seconds``.

>>> import asyncio
>>> async def main():
...     async for x in aiterate(lambda: iter(range(3))):
...         print(x)
>>> asyncio.run(main())
0
1
2
"""

from __future__ import annotations

import asyncio
import contextvars
import os
import queue
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from typing import Any, TypeVar

from rag.core.errors import ConfigError, RagError

T = TypeVar("T")

WORKERS_ENV = "RAG_WORKER_THREADS"


class DeadlineExceeded(RagError):
    """An async iterator ran past its deadline (:func:`with_deadline`)."""

    status = http_status = 408  # what the server answers (rag.app.server_guards.rag_error_status)

    def __init__(self, message: str, seconds: float) -> None:
        super().__init__(message)
        self.seconds = seconds


# -- cancellation ---------------------------------------------------------------------------------
class Cancel:
    """One request's cancellation, shared with the threads that work for it.

    ``tokens`` counts decoding steps of a local model (:mod:`rag.core.llm.hf`), ``pieces`` the text
    pieces a generator yielded; both keep counting until the token loop notices ``event``."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.reason = ""
        self.tokens = 0
        self.pieces = 0
        self.at: float | None = None  # time.monotonic() when cancelled

    def set(self, reason: str = "cancelled") -> None:
        if not self.event.is_set():
            self.reason, self.at = reason, time.monotonic()
            self.event.set()

    @property
    def cancelled(self) -> bool:
        return self.event.is_set()


_CANCEL: contextvars.ContextVar[Cancel | None] = contextvars.ContextVar(
    "ragnodes_cancel", default=None
)


def current_cancel() -> Cancel | None:
    """The cancel of the request being served in this context (``None`` outside one)."""
    return _CANCEL.get()


@contextmanager
def cancel_scope(cancel: Cancel) -> Iterator[Cancel]:
    token = _CANCEL.set(cancel)
    try:
        yield cancel
    finally:
        try:
            _CANCEL.reset(token)
        except ValueError:  # an async generator finalized from another context: nothing to undo
            pass


# -- the worker pool ------------------------------------------------------------------------------
class WorkerPool:
    """``size`` daemon threads for CPU-bound stages (started on first use).

    Args:
        size: threads (default ``$RAG_WORKER_THREADS``, else ``min(8, cpus + 2)``).
    """

    def __init__(self, size: int | None = None) -> None:
        if size is None:
            env = os.environ.get(WORKERS_ENV, "")
            size = int(env) if env.isdigit() else min(8, (os.cpu_count() or 1) + 2)
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ConfigError(f"worker threads must be an int >= 1, got {size!r}")
        self.size = size
        self._jobs: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._idle = 0
        self._lock = threading.Lock()

    def submit(self, fn: Callable[..., T], *args: Any) -> Future[T]:
        fut: Future[T] = Future()
        with self._lock:
            if self._idle <= 0 and len(self._threads) < self.size:
                name = f"ragnodes-worker-{len(self._threads)}"
                t = threading.Thread(target=self._work, name=name, daemon=True)
                self._threads.append(t)
                self._idle += 1
                t.start()
            self._idle -= 1  # this job takes an idle thread (or waits for one)
        self._jobs.put((fut, fn, args))
        return fut

    def _work(self) -> None:
        while True:
            fut, fn, args = self._jobs.get()
            if fut.set_running_or_notify_cancel():
                try:
                    fut.set_result(fn(*args))
                except BaseException as e:  # handed to the awaiting caller
                    fut.set_exception(e)
            with self._lock:
                self._idle += 1

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` in a worker, with this context's variables (current span, cancel)."""
        ctx = contextvars.copy_context()
        return await asyncio.wrap_future(self.submit(ctx.run, fn, *args))


_POOL: WorkerPool | None = None


def default_pool() -> WorkerPool:
    """The process's pool (``rag serve --worker-threads N`` sets its size)."""
    global _POOL
    if _POOL is None:
        _POOL = WorkerPool()
    return _POOL


def set_pool_size(size: int) -> WorkerPool:
    """Replace the process's pool by one of ``size`` threads (before serving)."""
    global _POOL
    _POOL = WorkerPool(size)
    return _POOL


# -- blocking iterator -> async iterator ----------------------------------------------------------
_DONE = object()


async def aiterate(
    make: Callable[[], Iterator[T]], cancel: Cancel | None = None
) -> AsyncIterator[T]:
    """Iterate ``make()`` in a thread of its own (it may block for a whole generation) and yield
    its items here. The thread runs with this context and ``cancel`` current; when this async
    iterator is closed or cancelled before the end, ``cancel`` is set and the blocking iterator is
    closed at its next item (a generator's token loop also stops at its next token)."""
    cancel = cancel if cancel is not None else current_cancel() or Cancel()
    loop = asyncio.get_running_loop()
    items: asyncio.Queue[Any] = asyncio.Queue()

    def put(item: Any) -> None:
        loop.call_soon_threadsafe(items.put_nowait, item)

    ctx = contextvars.copy_context()
    threading.Thread(
        target=ctx.run, args=(_pump, make, cancel, put), name="ragnodes-stream", daemon=True
    ).start()
    finished = False
    try:
        while True:
            got = await items.get()
            if got is _DONE:
                finished = True
                return
            ok, value = got
            if not ok:
                finished = True
                raise value
            yield value
    finally:
        if not finished:
            cancel.set("the consumer stopped")


def _pump(make: Callable[[], Iterator[Any]], cancel: Cancel, put: Callable[[Any], None]) -> None:
    """The thread of :func:`aiterate`: ``(True, item)`` per item, ``(False, error)``, then done;
    stops early (closing the source) once ``cancel`` is set."""
    it = None
    try:
        with cancel_scope(cancel):
            it = make()
            for item in it:
                if cancel.cancelled:
                    break
                put((True, item))
    except BaseException as e:
        put((False, e))
    finally:
        close = getattr(it, "close", None)
        if close is not None:
            try:
                close()
            except Exception:  # a source that fails to close is not the consumer's error
                pass
        try:
            put(_DONE)
        except RuntimeError:  # the loop is closed: nobody waits any more
            pass


async def with_deadline(
    it: AsyncIterator[T], seconds: float | None, what: str = "generation"
) -> AsyncIterator[T]:
    """``it``, ended with :class:`DeadlineExceeded` (and closed, so its generation is cancelled)
    once ``seconds`` have passed since the first item was asked for."""
    if seconds is None:
        async for item in it:
            yield item
        return
    end = time.monotonic() + seconds
    try:
        while True:
            try:
                item = await asyncio.wait_for(anext(it), max(0.0, end - time.monotonic()))
            except StopAsyncIteration:
                return
            except asyncio.TimeoutError:  # TimeoutError from Python 3.11 on
                raise DeadlineExceeded(
                    f"{what} exceeded the {what} timeout of {seconds:g} s", seconds
                ) from None
            yield item
    finally:
        aclose = getattr(it, "aclose", None)
        if aclose is not None:
            await aclose()
