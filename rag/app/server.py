"""The HTTP server (``rag serve``): search, answers streamed as server-sent events, documents.

Endpoints (OpenAPI at ``/openapi.json``, docs at ``/docs``)::

    GET    /health       status, no key needed          -> HealthResponse (503 while loading)
    GET    /health/live  the process serves HTTP        -> {"status": "live"}
    GET    /health/ready index and models loaded        -> {"status": "ready", ...}, else 503
    POST   /search       SearchRequest                  -> rag.core.types.Ranking
    POST   /ask          AskRequest (question, filter)  -> rag.core.types.Answer, or with
                         "stream": true, text/event-stream: `token` events {"text"}, then one
                         `answer` event (the Answer), or one `error` event
    POST   /documents    AddDocumentsRequest            -> DocumentsResponse
    DELETE /documents    DeleteDocumentsRequest         -> DocumentsResponse
                         (committed to the index folder before the answer; 403 when read-only)
    GET    /v1/models, POST /v1/chat/completions, POST /v1/embeddings: OpenAI-compatible
                         (rag.app.openai_routes), errors in OpenAI's {"error": {...}} shape

Safety defaults (:mod:`rag.app.server_guards`): every endpoint but ``/health`` needs an API key
(``Authorization: Bearer KEY`` or ``X-API-Key: KEY``; keys come from the ``RAG_API_KEYS``
environment variable, comma separated, compared in constant time); bodies over
``max_body_bytes`` get 413 (on ``Content-Length`` and on the bytes actually received); invalid
input gets 422 naming each bad field; a ragnodes error (bad filter, no generator) gets 400 with
its message; anything else a 500 without a stack trace; CORS is off unless origins are given.
Limits (:mod:`rag.app.server_limits`): messages and prompt tokens per request (422), body-read and
request timeouts (408), the generation timeout, concurrency per stage (429).

Production behaviour: the endpoints are async (:meth:`rag.pipeline.Pipeline.asearch` /
``astream``): CPU-bound stages run in a bounded worker pool (:mod:`rag.core.concurrency`), an HTTP
generator is awaited on the event loop, retrieval holds the index's read lock and generation does
not, and a client that disconnects stops its generation at the next token. Each stage is an
OpenTelemetry span (:mod:`rag.core.tracing`). ``rag serve`` loads in the background
(``/health/live`` at once, ``/health/ready`` when loaded, one ready line in the log) and on SIGTERM
stops accepting, drains in-flight requests up to ``--drain-timeout``, then cancels what is left.

Another router (``/chat``, say) mounts on the same state and key check::

    router = APIRouter()

    @router.post("/chat")
    def chat(req: ChatRequest, state: State) -> ChatResponse: ...

    app = create_app(pipeline, routers=[router])        # or later: mount(app, router)

Needs the ``serve`` extra (``pip install "ragnodes[serve]"``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any

from rag.app.api import (
    AddDocumentsRequest,
    AskRequest,
    ChatRequest,
    DeleteDocumentsRequest,
    DocumentsResponse,
    ErrorResponse,
    HealthResponse,
    SearchRequest,
)
from rag.app.server_guards import (
    API_KEYS_ENV,
    ERRORS,
    BodyLimitMiddleware,
    api_keys_from_env,
    install_error_handlers,
    rag_error_status,
    require_api_key,
)
from rag.app.server_limits import (
    Limits,
    LimitsMiddleware,
    check_message_count,
    check_prompt_tokens,
)
from rag.app.server_state import (  # noqa: F401  (State, ServerState: imported from here too)
    WARM_QUERY,
    ReadWriteLock,
    ServerState,
    State,
    get_state,
    require_ready,
)
from rag.core.concurrency import aiterate
from rag.core.errors import ConfigError, RagError
from rag.core.extras import require
from rag.core.types import Answer, Query, Ranking

try:
    from fastapi import APIRouter, Depends, FastAPI, HTTPException
    from fastapi.responses import JSONResponse, StreamingResponse
except ImportError:
    require("fastapi", extra="serve", feature="the HTTP server")
    raise

logger = logging.getLogger("ragnodes.server")

DEFAULT_MAX_BODY = 1_000_000  # bytes




# one server-sent event of /ask with "stream": true (the schema applies to each event)
SSE_EVENT = {
    "type": "object",
    "required": ["event", "data"],
    "properties": {
        "event": {"enum": ["token", "answer", "error"]},
        "data": {
            "type": "string",
            "description": 'JSON: {"text": piece} for token, the Answer for answer, an '
            "ErrorResponse for error. Tokens joined equal the answer's text (before strip).",
        },
    },
}


# -- endpoints ------------------------------------------------------------------------------------
def _sse(event: str, data: str) -> str:
    return f"event: {event}\ndata: {data}\n\n"


class _ErrorEvent(str):
    """The SSE ``error`` event that ends a stream (told apart from a text piece by type)."""


def _sse_error(e: BaseException) -> _ErrorEvent:
    if isinstance(e, RagError):
        code = "timeout" if int(getattr(e, "status", 0)) == 408 else rag_error_status(e)[1]
        return _ErrorEvent(_sse("error", json.dumps({"error": code, "message": str(e)})))
    return _ErrorEvent(
        _sse("error", json.dumps({"error": "internal_error", "message": "internal error"}))
    )


async def _answer_events(
    state: ServerState, query: Query, flt: dict[str, Any] | None = None
) -> AsyncIterator[str]:
    """SSE of one answer (:meth:`rag.pipeline.Pipeline.astream`). The read lock covers retrieval
    only, so a long generation never blocks index changes; a client that leaves closes this
    iterator, which cancels the generation at its next token."""

    def answer() -> AsyncIterator[Any]:
        return state.pipeline.astream(
            query, lock=state.lock.reading(), pool=state.pool, filter=flt
        )

    async for item in state.stream(answer, _sse_error):
        if isinstance(item, Answer):
            yield _sse("answer", item.model_dump_json())
        elif isinstance(item, _ErrorEvent):
            yield item
        else:
            yield _sse("token", json.dumps({"text": item}))


async def check_prompt(state: ServerState, texts: list[str], n_messages: int = 1) -> None:
    """The message-count and prompt-token limits (422), before any retrieval."""
    check_message_count(state.limits, n_messages)
    await state.pool.run(check_prompt_tokens, state.limits, state.pipeline.generator, texts)


def core_router() -> APIRouter:
    """``/search``, ``/ask``, ``/documents``; every route needs the API key."""
    router = APIRouter(dependencies=[Depends(require_api_key)], responses=ERRORS)

    @router.post("/search", response_model=Ranking, summary="search the index")
    async def search(req: SearchRequest, state: State) -> Ranking:
        query = Query(text=req.query, instruction=req.instruction)
        async with state.gates.enter("search"):  # batched with concurrent searches
            return await state.searches.search(query, req.k, req.filter_dict())

    @router.post(
        "/ask",
        response_model=Answer,
        summary="answer a question with citations",
        responses={200: {"content": {"text/event-stream": {"schema": SSE_EVENT}}}},
    )
    async def ask(req: AskRequest, state: State) -> Any:
        if state.pipeline.generator is None:
            raise ConfigError("this server has no generator: start it with --model to answer")
        query = Query(text=req.question, instruction=req.instruction)
        await check_prompt(state, [req.question, req.instruction or ""])
        state.gates.check("generate")
        if req.stream:
            return StreamingResponse(
                _answer_events(state, query, req.filter),
                media_type="text/event-stream",
                headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
            )
        # retrieval under the read lock, generation outside it (Pipeline.astream's ``lock``)
        return await state.complete(
            lambda: state.pipeline.astream(
                query, lock=state.lock.reading(), pool=state.pool, filter=req.filter
            )
        )

    @router.post("/documents", response_model=DocumentsResponse, summary="add or replace")
    def add(req: AddDocumentsRequest, state: State) -> Any:
        ids = [d.id for d in req.documents]
        if len(set(ids)) < len(ids):
            dup = next(i for i in ids if ids.count(i) > 1)
            raise HTTPException(409, f"document id {dup!r} occurs twice in one request")
        _check_writable(state)
        with state.lock.writing():
            state.pipeline.index(req.documents)  # committed (durable) before the answer
            state.warm()
            return DocumentsResponse(changed=len(req.documents), total=state.size)

    @router.delete("/documents", response_model=DocumentsResponse, summary="delete by id")
    def delete(req: DeleteDocumentsRequest, state: State) -> Any:
        _check_writable(state)
        with state.lock.writing():
            n = state.pipeline.delete(req.ids)
            if n:
                state.warm()
            return DocumentsResponse(changed=n, total=state.size)

    return router


class LockedSearch:
    """A pipeline whose searches hold the index's read lock, for the chat engines: a chat turn
    retrieves under the lock and generates outside it (``/documents`` waits for searches only)."""

    def __init__(self, pipeline: Any, lock: ReadWriteLock) -> None:
        self._pipeline, self._lock = pipeline, lock

    def __getattr__(self, name: str) -> Any:
        return getattr(self._pipeline, name)

    def search(self, *args: Any, **kwargs: Any) -> Any:
        with self._lock.reading():
            return self._pipeline.search(*args, **kwargs)

    def search_batch(self, *args: Any, **kwargs: Any) -> Any:
        with self._lock.reading():
            return self._pipeline.search_batch(*args, **kwargs)


def chat_router(sessions: Any) -> APIRouter:
    """``POST /chat`` (JSON, or server-sent ``token`` events then one ``answer`` event),
    ``GET`` / ``DELETE /chat/{conversation_id}``, for :func:`rag.app.server.create_app`. A turn
    retrieves under the index's read lock (the sessions' pipeline is a :class:`LockedSearch`)
    and generates outside it, in a thread of its own that the request's cancel stops."""
    router = APIRouter()

    @router.post(
        "/chat",
        summary="one chat turn (multi-turn by conversation_id)",
        responses={200: {"content": {"text/event-stream": {"schema": SSE_EVENT}}}},
    )
    async def chat(req: ChatRequest, state: State) -> Any:
        await check_prompt(state, [req.message])
        state.gates.check("generate")

        def turn() -> AsyncIterator[dict[str, Any]]:
            return aiterate(lambda: sessions.stream(req.message, req.conversation_id,
                                                    agent=req.agent))

        if not req.stream:
            last = await state.complete(turn)
            return {k: v for k, v in (last or {}).items() if k != "type"}

        async def events() -> AsyncIterator[str]:
            async for ev in state.stream(turn, _sse_error):
                if isinstance(ev, str):
                    yield ev
                elif ev["type"] == "delta":
                    yield _sse("token", json.dumps({"text": ev["text"]}))
                else:
                    body = {k: v for k, v in ev.items() if k != "type"}
                    yield _sse("answer", json.dumps(body))

        return StreamingResponse(events(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache"})

    missing = {404: {"model": ErrorResponse, "description": "no such conversation"}}

    @router.get("/chat/{conversation_id}", summary="a conversation's turns", responses=missing)
    def get(conversation_id: str) -> Any:
        return sessions.get(conversation_id).model_dump(mode="json")  # NotFoundError: 404

    @router.delete("/chat/{conversation_id}", summary="forget a conversation", responses=missing)
    def delete(conversation_id: str) -> Any:
        if not sessions.delete(conversation_id):
            raise HTTPException(404, f"no conversation with id {conversation_id!r}")
        return {"deleted": conversation_id}

    return router


def _check_writable(state: ServerState) -> None:
    if state.read_only:
        raise HTTPException(403, "this server is read-only (started with --read-only)")


def create_app(
    pipeline: Any,
    *,
    api_keys: Sequence[str] | None = None,
    auth: bool = True,
    max_body_bytes: int = DEFAULT_MAX_BODY,
    cors_origins: Sequence[str] = (),
    save_to: str | os.PathLike[str] | None = None,
    routers: Sequence[APIRouter] = (),
    read_only: bool = False,
    limits: Limits | None = None,
    load: str = "now",
    address: str | None = None,
    started: float | None = None,
    search_batch: int = 32,
) -> FastAPI:
    """The FastAPI app over ``pipeline`` (a Pipeline, or a retriever for search only).

    Args:
        api_keys: accepted keys (default: ``$RAG_API_KEYS``, comma separated). With ``auth``
            on and no key at all the app refuses to build.
        auth: ``False`` serves without keys (for a loopback-only server).
        max_body_bytes: larger request bodies get 413.
        cors_origins: origins allowed by CORS; empty (the default) adds no CORS headers.
        save_to: save an in-memory index there first; changes through ``/documents`` are
            committed there. A pipeline opened from a folder commits to it by default.
        read_only: refuse ``/documents`` changes (403) and follow another writer's commits.
        routers: more routers (e.g. ``/chat``), mounted with the same key check.
        limits: :class:`rag.app.server_limits.Limits` (message, token, time and concurrency limits).
        load: ``now`` loads models and warms the index here; ``background`` once the server
            runs, so ``/health/live`` answers at once and ``/health/ready`` when loaded (what
            ``rag serve`` does); other routes answer 503 until then.
        address: where the server listens, for the ready line; ``started``: when startup began
            (``time.monotonic()``), for its time to ready.
        search_batch: concurrent ``/search`` requests run as one ``search_batch`` call of up
            to this many queries (:mod:`rag.app.server_batching`; ``1``: each alone).
    """
    if (
        isinstance(max_body_bytes, bool)
        or not isinstance(max_body_bytes, int)
        or max_body_bytes < 1
    ):
        raise ConfigError(f"max_body_bytes must be an int >= 1, got {max_body_bytes!r}")
    if load not in ("now", "background"):
        raise ConfigError(f"load must be 'now' or 'background', got {load!r}")
    keys = list(api_keys) if api_keys is not None else api_keys_from_env()
    if auth and not keys:
        raise ConfigError(
            f"no API key: set {API_KEYS_ENV}=key1,key2 (or pass api_keys=), "
            "or serve without auth on 127.0.0.1 only (--no-auth)"
        )
    t0 = started if started is not None else time.monotonic()
    state = ServerState(pipeline, save_to, read_only, limits, search_batch)
    if load == "now":
        state.load()  # load models and build lazy indexes before the first request
    app = FastAPI(
        title="ragnodes",
        version=_version(),
        description="Search and grounded question answering over a ragnodes index.",
        lifespan=_lifespan(state, load, address, t0),
    )
    app.state.rag = state
    app.state.api_keys = [k.encode("utf-8") for k in keys] if auth else None
    install_error_handlers(app)
    app.include_router(health_router())
    if getattr(pipeline, "generator", None) is not None:  # multi-turn chat needs a generator
        from rag.app.chat_service import ChatSessions

        sessions = ChatSessions(LockedSearch(state.pipeline, state.lock))
        routers = [chat_router(sessions), *routers]
    from rag.app.openai_routes import (
        openai_router,  # /v1/models, /v1/chat/completions, /v1/embeddings
    )

    routers = [openai_router(), *routers]
    for router in [core_router(), *routers]:
        mount(app, router)
    if cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(cors_origins),
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["Authorization", "X-API-Key", "Content-Type"],
        )
    app.add_middleware(BodyLimitMiddleware, max_bytes=max_body_bytes)
    app.add_middleware(LimitsMiddleware, limits=state.limits)  # outermost: times the body read
    _recursive_filter_schema(app)
    return app


def _recursive_filter_schema(app: FastAPI) -> None:
    """``/openapi.json`` with the filter schema recursive
    (:func:`rag.core.filters.openapi_filter_refs`): a client or fuzzer generating from it sends only
    filters the server accepts."""
    from rag.core.filters import openapi_filter_refs

    default = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = openapi_filter_refs(default())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def health_router() -> APIRouter:
    """``/health`` (as before), ``/health/live`` and ``/health/ready``; no key needed."""
    router = APIRouter(tags=["health"])

    @router.get(
        "/health",
        response_model=HealthResponse,
        summary="status (no key needed): 200 once ready, 503 with status 'loading' before",
        responses={503: {"model": HealthResponse, "description": "still loading"}},
    )
    def health(state: State) -> Any:
        body = HealthResponse(
            status="ok" if state.ready else "loading",
            documents=state.size,
            retriever=state.pipeline.retriever.name,
            generator=state.pipeline.generator is not None,
        )
        if not state.ready:  # as before: 200 means requests can be sent
            return JSONResponse(body.model_dump(), status_code=503)
        return body

    @router.get("/health/live", summary="the process serves HTTP (no key needed)")
    def live() -> dict[str, str]:
        return {"status": "live"}

    @router.get(
        "/health/ready",
        summary="the index and models are loaded (503 until then; no key needed)",
        responses={503: {"model": ErrorResponse, "description": "still loading"}},
    )
    def ready(state: State) -> Any:
        if not state.ready:
            raise HTTPException(503, "loading the index and models", headers={"Retry-After": "2"})
        return {"status": "ready", **state.describe()}

    return router


def ready_line(state: ServerState, address: str | None, seconds: float) -> str:
    """The one log line ``rag serve`` prints when ready."""
    d = state.describe()
    return (
        f"ragnodes ready: index={d['index']} generation={d['generation']} "
        f"documents={d['documents']} retriever={d['retriever']} model={d['model'] or 'none'} "
        f"address={address or '(unknown)'} ready_in={seconds:.1f}s"
    )


def _lifespan(state: ServerState, load: str, address: str | None, t0: float) -> Any:
    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async def load_now() -> None:
            try:
                if load == "background":
                    await asyncio.get_running_loop().run_in_executor(None, state.load)
                logger.info(ready_line(state, address, time.monotonic() - t0))
            except Exception:
                logger.exception("loading the index and models failed; the server is not ready")

        task = asyncio.ensure_future(load_now())
        try:
            yield
        finally:  # connections drained (or the drain deadline passed): stop what still runs
            task.cancel()
            if n := state.cancel_all():
                logger.warning("cancelled %d generation(s) still running at shutdown", n)

    return lifespan


def mount(app: FastAPI, router: APIRouter) -> None:
    """Mount another router behind the API-key check (and 503 until the server is ready), with
    the shared error responses."""
    app.include_router(
        router, dependencies=[Depends(require_ready), Depends(require_api_key)], responses=ERRORS
    )


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("ragnodes")
    except PackageNotFoundError:
        return "0"
