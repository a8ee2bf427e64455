"""The HTTP server (``rag serve``): search, answers streamed as server-sent events, documents.

Endpoints (OpenAPI at ``/openapi.json``, docs at ``/docs``)::

    GET    /health       liveness, no key needed        -> HealthResponse
    POST   /search       SearchRequest                  -> rag.types.Ranking
    POST   /ask          AskRequest                     -> rag.types.Answer, or with
                         "stream": true, text/event-stream: `token` events {"text"}, then one
                         `answer` event (the Answer), or one `error` event
    POST   /documents    AddDocumentsRequest            -> DocumentsResponse
    DELETE /documents    DeleteDocumentsRequest         -> DocumentsResponse
                         (committed to the index folder before the answer; 403 when read-only)
    GET    /v1/models, POST /v1/chat/completions, POST /v1/embeddings: OpenAI-compatible
                         (rag.openai_routes), errors in OpenAI's {"error": {...}} shape

Safety defaults (:mod:`rag.server_guards`): every endpoint but ``/health`` needs an API key
(``Authorization: Bearer KEY`` or ``X-API-Key: KEY``; keys come from the ``RAG_API_KEYS``
environment variable, comma separated, compared in constant time); bodies over
``max_body_bytes`` get 413 (on ``Content-Length`` and on the bytes actually received); invalid
input gets 422 naming each bad field; a ragnodes error (bad filter, no generator) gets 400 with
its message; anything else a 500 without a stack trace; CORS is off unless origins are given.

Another router (``/chat``, say) mounts on the same state and key check::

    router = APIRouter()

    @router.post("/chat")
    def chat(req: ChatRequest, state: State) -> ChatResponse: ...

    app = create_app(pipeline, routers=[router])        # or later: mount(app, router)

Needs the ``serve`` extra (``pip install "ragnodes[serve]"``).
"""

from __future__ import annotations

import itertools
import json
import logging
import os
from collections.abc import Iterator, Sequence
from typing import Any

from rag.api import (
    AddDocumentsRequest,
    AskRequest,
    ChatRequest,
    DeleteDocumentsRequest,
    DocumentsResponse,
    ErrorResponse,
    HealthResponse,
    SearchRequest,
)
from rag.errors import ConfigError, RagError
from rag.extras import require
from rag.integrations._common import search as run_search
from rag.server_guards import (
    API_KEYS_ENV,
    ERRORS,
    BodyLimitMiddleware,
    api_keys_from_env,
    install_error_handlers,
    rag_error_status,
    require_api_key,
)
from rag.server_state import (  # noqa: F401  (State, ServerState: imported from here too)
    WARM_QUERY,
    ReadWriteLock,
    ServerState,
    State,
    get_state,
)
from rag.types import Answer, Query, Ranking

try:
    from fastapi import APIRouter, Depends, FastAPI, HTTPException
    from fastapi.responses import StreamingResponse
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


def _answer_events(state: ServerState, query: Query) -> Iterator[str]:
    """SSE of one answer. The read lock covers retrieval only (the first item of
    ``ask_stream`` comes after the search), so a long generation never blocks index changes."""
    try:
        with state.lock.reading():
            stream = state.pipeline.ask_stream(query)
            first = next(stream)
        for item in itertools.chain([first], stream):  # lazily: each piece is sent as made
            if isinstance(item, Answer):
                yield _sse("answer", item.model_dump_json())
            else:
                yield _sse("token", json.dumps({"text": item}))
    except RagError as e:
        yield _sse("error", json.dumps({"error": rag_error_status(e)[1], "message": str(e)}))
    except Exception:
        logger.exception("unhandled error while streaming an answer")
        yield _sse("error", json.dumps({"error": "internal_error", "message": "internal error"}))


def core_router() -> APIRouter:
    """``/search``, ``/ask``, ``/documents``; every route needs the API key."""
    router = APIRouter(dependencies=[Depends(require_api_key)], responses=ERRORS)

    @router.post("/search", response_model=Ranking, summary="search the index")
    def search(req: SearchRequest, state: State) -> Ranking:
        query = Query(text=req.query, instruction=req.instruction)
        state.refresh()
        with state.lock.reading():
            return run_search(state.pipeline, query, req.k, req.filter_dict())

    @router.post(
        "/ask",
        response_model=Answer,
        summary="answer a question with citations",
        responses={200: {"content": {"text/event-stream": {"schema": SSE_EVENT}}}},
    )
    def ask(req: AskRequest, state: State) -> Any:
        if state.pipeline.generator is None:
            raise ConfigError("this server has no generator: start it with --model to answer")
        query = Query(text=req.question, instruction=req.instruction)
        if req.stream:
            return StreamingResponse(
                _answer_events(state, query),
                media_type="text/event-stream",
                headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
            )
        with state.lock.reading():
            return state.pipeline.ask(query)

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


def chat_router(sessions: Any) -> APIRouter:
    """``POST /chat`` (JSON, or server-sent ``token`` events then one ``answer`` event),
    ``GET`` / ``DELETE /chat/{conversation_id}``, for :func:`rag.server.create_app`. A turn holds
    the index's read lock, so ``/documents`` changes wait for running turns."""
    router = APIRouter()

    @router.post(
        "/chat",
        summary="one chat turn (multi-turn by conversation_id)",
        responses={200: {"content": {"text/event-stream": {"schema": SSE_EVENT}}}},
    )
    def chat(req: ChatRequest, state: State) -> Any:
        if not req.stream:
            with state.lock.reading():
                return sessions.chat(req.message, req.conversation_id, agent=req.agent)

        def events() -> Iterator[str]:
            with state.lock.reading():
                for ev in sessions.stream(req.message, req.conversation_id, agent=req.agent):
                    if ev["type"] == "delta":
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
    """
    if (
        isinstance(max_body_bytes, bool)
        or not isinstance(max_body_bytes, int)
        or max_body_bytes < 1
    ):
        raise ConfigError(f"max_body_bytes must be an int >= 1, got {max_body_bytes!r}")
    keys = list(api_keys) if api_keys is not None else api_keys_from_env()
    if auth and not keys:
        raise ConfigError(
            f"no API key: set {API_KEYS_ENV}=key1,key2 (or pass api_keys=), "
            "or serve without auth on 127.0.0.1 only (--no-auth)"
        )
    app = FastAPI(
        title="ragnodes",
        version=_version(),
        description="Search and grounded question answering over a ragnodes index.",
    )
    app.state.rag = ServerState(pipeline, save_to, read_only)
    app.state.rag.warm()  # load models and build lazy indexes before the first request
    app.state.api_keys = [k.encode("utf-8") for k in keys] if auth else None
    install_error_handlers(app)

    @app.get("/health", response_model=HealthResponse, summary="liveness (no key needed)")
    def health(state: State) -> HealthResponse:
        return HealthResponse(
            status="ok",
            documents=state.size,
            retriever=state.pipeline.retriever.name,
            generator=state.pipeline.generator is not None,
        )

    if getattr(pipeline, "generator", None) is not None:  # multi-turn chat needs a generator
        from rag.chat_service import ChatSessions

        routers = [chat_router(ChatSessions(pipeline)), *routers]
    from rag.openai_routes import openai_router  # /v1/models, /v1/chat/completions, /v1/embeddings

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
    return app


def mount(app: FastAPI, router: APIRouter) -> None:
    """Mount another router behind the API-key check, with the shared error responses."""
    app.include_router(router, dependencies=[Depends(require_api_key)], responses=ERRORS)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("ragnodes")
    except PackageNotFoundError:
        return "0"
