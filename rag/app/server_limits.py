"""The limits that protect ``rag serve``: each violation is a 4xx whose one line states the limit
and the flag that sets it.

* ``--max-messages`` (256): messages per request; refused before any work (422).
* ``--max-prompt-tokens`` (8192): prompt tokens per request; refused before retrieval (422).
* ``--body-timeout`` (10 s): the whole body must arrive in time, however slowly it trickles in;
  otherwise 408 and the connection is closed (slowloris).
* ``--request-timeout`` (60 s): a response must start in time; otherwise the handler is
  cancelled and the answer is 408.
* ``--generation-timeout`` (120 s): an answer must be generated in time; otherwise the
  generation is cancelled and the answer is 408.
* ``--max-concurrent`` (``search=64,generate=4``): requests in flight per stage; one more is
  refused at once (429).

A streamed answer that hits the generation timeout ends with one ``error`` event (OpenAI routes:
one ``{"error": ...}`` chunk) stating the limit, since its 200 status was already sent.
:class:`LimitsMiddleware` also cancels a request whose client went away before its response
started, so a non-streamed ``/ask`` stops generating too.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from rag.core.errors import ConfigError, RagError

try:
    from fastapi import HTTPException
except ImportError:  # pragma: no cover - rag.app.server already required the extra
    raise

STAGES = ("search", "generate")


class LimitExceeded(RagError):
    """A request over one of the server's limits (the status says which kind)."""

    def __init__(self, message: str, status: int = 422) -> None:
        super().__init__(message)
        self.status = self.http_status = status  # rag.app.server_guards.rag_error_status reads it


@dataclass
class Limits:
    """The server's limits (``None``: no limit). See the module docstring for each one."""

    max_messages: int | None = 256
    max_prompt_tokens: int | None = 8192
    body_timeout: float | None = 10.0
    request_timeout: float | None = 60.0
    generation_timeout: float | None = 120.0
    max_concurrent: dict[str, int] = field(default_factory=lambda: {"search": 64, "generate": 4})

    def __post_init__(self) -> None:
        for name in ("max_messages", "max_prompt_tokens"):
            v = getattr(self, name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
                raise ConfigError(f"{name} must be an int >= 1, got {v!r}")
        for name in ("body_timeout", "request_timeout", "generation_timeout"):
            v = getattr(self, name)
            if v is not None and not v > 0:
                raise ConfigError(f"{name} must be > 0 seconds, got {v!r}")
        for stage, n in self.max_concurrent.items():
            if stage not in STAGES:
                raise ConfigError(f"max_concurrent: unknown stage {stage!r}; stages: {STAGES}")
            if isinstance(n, bool) or not isinstance(n, int) or n < 1:
                raise ConfigError(f"max_concurrent[{stage!r}] must be an int >= 1, got {n!r}")


def parse_concurrency(spec: str) -> dict[str, int]:
    """``"search=64,generate=4"`` -> ``{"search": 64, "generate": 4}`` (the CLI's syntax)."""
    out: dict[str, int] = {}
    for part in filter(None, (p.strip() for p in spec.split(","))):
        stage, _, n = part.partition("=")
        if stage.strip() not in STAGES or not n.strip().isdigit():
            raise ConfigError(
                f"--max-concurrent: expected STAGE=N with STAGE in {STAGES}, got {part!r}"
            )
        out[stage.strip()] = int(n)
    return out


# -- per-request checks ---------------------------------------------------------------------------
def check_message_count(limits: Limits, n: int) -> None:
    if limits.max_messages is not None and n > limits.max_messages:
        raise LimitExceeded(
            f"messages: {n} messages exceed the limit of {limits.max_messages} per request "
            "(--max-messages)"
        )


def check_prompt_tokens(limits: Limits, generator: Any, texts: list[str]) -> None:
    """Refuse a prompt over ``max_prompt_tokens`` (counted with the generator's tokenizer, else
    about four characters a token). Runs in a worker: tokenizing a big body takes time."""
    if limits.max_prompt_tokens is None:
        return
    from rag.core.tokens import approx_tokens, token_counter

    total_chars = sum(len(t) for t in texts)
    # a tokenizer yields at most one token per character (plus nothing): short prompts are fine
    if total_chars <= limits.max_prompt_tokens:
        return
    count = token_counter(generator) if generator is not None else approx_tokens
    n = sum(count(t) for t in texts)
    if n > limits.max_prompt_tokens:
        raise LimitExceeded(
            f"prompt: {n} tokens exceed the limit of {limits.max_prompt_tokens} prompt tokens "
            "per request (--max-prompt-tokens)"
        )


# -- concurrency per stage ------------------------------------------------------------------------
class StageGates:
    """In-flight requests per stage; one over a stage's limit is refused at once (429)."""

    def __init__(self, limits: dict[str, int]) -> None:
        self.limits = dict(limits)
        self.active = dict.fromkeys(STAGES, 0)

    def check(self, stage: str) -> None:
        """429 now if ``stage`` is full (a streamed response checks before its 200 is sent)."""
        limit = self.limits.get(stage)
        if limit is not None and self.active[stage] >= limit:
            raise LimitExceeded(
                f"{stage}: {limit} requests are already in this stage, its limit "
                f"(--max-concurrent {stage}={limit}); retry later",
                status=429,
            )

    @contextlib.asynccontextmanager
    async def enter(self, stage: str) -> AsyncIterator[None]:
        self.check(stage)
        self.active[stage] += 1  # one event loop: no lock needed
        try:
            yield
        finally:
            self.active[stage] -= 1


# -- timeouts (ASGI middleware) -------------------------------------------------------------------
class LimitsMiddleware:
    """Body-read timeout, request timeout, and cancellation of a request whose client left.

    * The body must arrive within ``body_timeout`` seconds of the request's start, however
      slowly it trickles in: otherwise 408 with ``Connection: close`` (the socket is freed).
    * A response must start within ``request_timeout``: otherwise the handler is cancelled
      (its generation with it) and the answer is 408. A streamed response has started once its
      headers are sent; the generation timeout bounds it from there.
    * A client that disconnects before the response started cancels the handler.
    """

    def __init__(self, app: Any, limits: Limits, exempt: tuple[str, ...] = ("/health",)) -> None:
        self.app, self.limits, self.exempt = app, limits, exempt

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"].startswith(self.exempt):
            return await self.app(scope, receive, send)
        await _Exchange(self.app, self.limits, scope, receive, send).run()


class _Exchange:
    """One request under :class:`LimitsMiddleware`."""

    def __init__(self, app: Any, limits: Limits, scope: dict, receive: Any, send: Any) -> None:
        self.app, self.limits, self.scope = app, limits, scope
        self.receive, self.send = receive, send
        self.loop = asyncio.get_running_loop()
        self.body_deadline = (
            self.loop.time() + limits.body_timeout if limits.body_timeout else None
        )
        self.started = False
        self.disconnected: asyncio.Future[dict] = self.loop.create_future()
        self.body_in = asyncio.Event()  # the body is complete: a disconnect is all that is left
        if scope["method"] in ("GET", "HEAD", "OPTIONS"):
            self.body_in.set()

    async def timed_receive(self) -> dict:
        if self.body_in.is_set():  # only the disconnect is left to wait for
            return await asyncio.shield(self.disconnected)
        message = await self._receive_by_deadline()
        if message["type"] == "http.request" and not message.get("more_body", False):
            self.body_in.set()
        elif message["type"] == "http.disconnect":
            self._gone(message)
        return message

    async def _receive_by_deadline(self) -> dict:
        """The next body message, or :class:`BodyTimeout` once the body deadline passes. A timer
        cancels the wait, so a body already received is returned at once however late the
        event loop gets to it (a busy loop never turns into false timeouts)."""
        if self.body_deadline is None:
            return dict(await self.receive())
        task = asyncio.current_task()
        fired = []

        def fire() -> None:
            fired.append(True)
            if task is not None:
                task.cancel()

        handle = self.loop.call_at(self.body_deadline, fire)
        try:
            return dict(await self.receive())
        except asyncio.CancelledError:
            if not fired:
                raise
            if task is not None and hasattr(task, "uncancel"):
                task.uncancel()
            raise BodyTimeout(self.limits.body_timeout or 0) from None
        finally:
            handle.cancel()

    def _gone(self, message: dict) -> None:
        if not self.disconnected.done():
            self.disconnected.set_result(message)

    async def marked_send(self, message: dict) -> None:
        if message["type"] == "http.response.start":
            self.started = True
        await self.send(message)

    async def watch_disconnect(self) -> None:
        await self.body_in.wait()
        while True:  # the only reader once the body is in (a GET's empty body comes first)
            message = await self.receive()
            if message["type"] == "http.disconnect":
                self._gone(message)
                return

    async def run(self) -> None:
        app = asyncio.ensure_future(self.app(self.scope, self.timed_receive, self.marked_send))
        watcher = asyncio.ensure_future(self.watch_disconnect())
        try:
            if await self._wait(app):
                app.result()
        finally:
            watcher.cancel()
            if not app.done():
                app.cancel()
                with contextlib.suppress(BaseException):
                    await app

    async def _wait(self, app: asyncio.Future) -> bool:
        """Wait for the app; ``False`` when it was cancelled here (timeout, client gone)."""
        timeout = self.limits.request_timeout
        deadline = self.loop.time() + timeout if timeout else None
        while not app.done():
            wait = (
                None if deadline is None or self.started
                else max(0.0, deadline - self.loop.time())
            )
            await asyncio.wait(
                {app, self.disconnected}, timeout=wait, return_when=asyncio.FIRST_COMPLETED
            )
            if app.done():
                break
            if self.disconnected.done():
                if self.started:  # a streamed response notices on its next write
                    await asyncio.wait({app})
                    break
                return False  # the client left: the work (generation included) is cancelled
            if not self.started and deadline is not None and self.loop.time() >= deadline:
                app.cancel()
                with contextlib.suppress(BaseException):
                    await app
                await _refuse(self.scope, self.send, 408, "request_timeout",
                              f"the request exceeded the request timeout of {timeout:g} s "
                              "(--request-timeout)")
                return False
        return not app.cancelled()


class BodyTimeout(HTTPException):
    """The request body did not arrive within the body-read timeout: 408, and the connection is
    closed (FastAPI answers an ``HTTPException`` raised while it reads the body)."""

    def __init__(self, seconds: float) -> None:
        super().__init__(
            408,
            f"the request body was not received within the body-read timeout of {seconds:g} s "
            "(--body-timeout)",
            headers={"Connection": "close"},
        )


async def _refuse(scope: dict, send: Any, status: int, code: str, message: str) -> None:
    from rag.app.server_guards import error_response

    response = error_response(status, code, message, headers={"Connection": "close"},
                              path=scope["path"])
    with contextlib.suppress(Exception):  # the client may be gone
        await response(scope, _no_receive, send)


async def _no_receive() -> dict:
    return {"type": "http.disconnect"}
