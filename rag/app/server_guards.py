"""What guards the HTTP server: API keys, body size, and error bodies without stack traces.

* :func:`require_api_key` -- a FastAPI dependency: ``Authorization: Bearer KEY`` or
  ``X-API-Key: KEY``, checked with :func:`hmac.compare_digest` against every configured key.
* :class:`BodyLimitMiddleware` -- 413 on a ``Content-Length`` over the limit, and on the bytes
  actually received (a chunked body has no length).
* :func:`install_error_handlers` -- every error body is an :class:`~rag.app.api.ErrorResponse`:
  422 names each bad field, a :class:`~rag.core.errors.RagError` answers with its kind's status (400
  input/config, 404 not found, 409 index state, 502 generation, 503 model or corrupt index; see
  :mod:`rag.core.errors`) and its message, anything
  else a 500 that says only "internal server error" (the traceback goes to the server log).
"""

from __future__ import annotations

import hmac
import logging
import os
from collections.abc import Sequence
from typing import Annotated, Any

from rag.app.api import ErrorResponse
from rag.core.errors import IndexCorruptError, RagError
from rag.core.extras import require

try:
    from fastapi import FastAPI, HTTPException, Request, Security
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse
    from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
    from starlette.exceptions import HTTPException as StarletteHTTPException
except ImportError:
    require("fastapi", extra="serve", feature="the HTTP server")
    raise

logger = logging.getLogger("ragnodes.server")

API_KEYS_ENV = "RAG_API_KEYS"

# the error responses every authenticated route documents in the OpenAPI schema
ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse, "description": what}
    for code, what in {
        400: "a ragnodes error (bad filter, no generator), with its message",
        409: "conflicting input (the same document id twice), or the index's state",
        502: "the generator produced no output or its backend failed",
        503: "a model that cannot be loaded, or a corrupt index",
        401: "missing or wrong API key",
        408: "the body, the response or the generation took longer than its timeout",
        413: "request body too large",
        422: "invalid input, or over a limit: the message names each bad field or the limit",
        429: "a stage is at its concurrency limit (--max-concurrent); retry later",
    }.items()
}


# -- API keys -------------------------------------------------------------------------------------
def api_keys_from_env(env: str = API_KEYS_ENV) -> list[str]:
    return [k.strip() for k in os.environ.get(env, "").split(",") if k.strip()]


_bearer = HTTPBearer(auto_error=False, description="Authorization: Bearer <API key>")
_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="X-API-Key: <API key>")


async def require_api_key(
    request: Request,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)],
    header: Annotated[str | None, Security(_header)],
) -> None:
    """Dependency: 401 unless the request carries one of the app's keys (constant-time check).
    An app built with ``auth=False`` lets every request through. ``async``: a few microseconds
    on the event loop, where a plain ``def`` would cost a threadpool round trip per request."""
    keys: list[bytes] = request.app.state.api_keys
    if keys is None:
        return
    given = (bearer.credentials if bearer is not None else header) or ""
    ok = False
    for key in keys:  # no early exit: the time taken does not depend on which key matched
        ok |= hmac.compare_digest(given.encode("utf-8"), key)
    if not ok:
        raise HTTPException(
            401,
            "missing or invalid API key: send 'Authorization: Bearer <key>' or 'X-API-Key: <key>'",
            headers={"WWW-Authenticate": "Bearer"},
        )


# -- body size limit ------------------------------------------------------------------------------
class BodyTooLarge(HTTPException):
    def __init__(self, limit: int) -> None:
        super().__init__(413, f"request body exceeds the limit of {limit} bytes")


class BodyLimitMiddleware:
    """Refuse bodies over ``max_bytes``: on ``Content-Length`` before reading, and while reading
    (a chunked body has no length)."""

    def __init__(self, app: Any, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_bytes):
            response = error_response(
                413, "payload_too_large", BodyTooLarge(self.max_bytes).detail, path=scope["path"]
            )
            return await response(scope, receive, send)
        received = 0

        async def limited() -> dict:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise BodyTooLarge(self.max_bytes)  # FastAPI turns it into the 413 response
            return message

        await self.app(scope, limited, send)


# -- errors ---------------------------------------------------------------------------------------
_CODES = {
    400: "bad_request",
    401: "unauthorized",
    404: "not_found",
    405: "method_not_allowed",
    408: "request_timeout",
    409: "conflict",
    413: "payload_too_large",
    429: "too_many_requests",
    422: "validation_error",
    500: "internal_error",
    502: "generation_failed",
    503: "unavailable",
}


def rag_error_status(exc: Exception) -> tuple[int, str]:
    """The HTTP status and error code of an anticipated error, by its kind (``rag.core.errors``):
    input and config 400, not found 404, index state 409 (corrupt 503), model 503, generation
    502."""
    status = int(getattr(exc, "http_status", 400))  # a server limit sets its own: 408/422/429
    return status, "limit_exceeded" if status == 422 else _CODES.get(status, "bad_request")


def error_response(
    status: int,
    code: str,
    message: str,
    details: list | None = None,
    headers: dict | None = None,
    path: str = "",
) -> JSONResponse:
    """An :class:`~rag.app.api.ErrorResponse`; under ``/v1/`` OpenAI's error body instead
    (:func:`rag.app.openai_api.openai_error`), which the ``openai`` SDK and chat front ends read."""
    if path.startswith("/v1/"):
        from rag.app.openai_api import openai_error

        body = openai_error(status, code, message, details)
        return JSONResponse(body, status_code=status, headers=headers)
    err = ErrorResponse(error=code, message=message, details=details or [])
    return JSONResponse(err.model_dump(), status_code=status, headers=headers)


def _validation_message(errors: Sequence[dict]) -> tuple[str, list[dict]]:
    details = []
    for e in errors:
        loc = ".".join(str(p) for p in e.get("loc", ()) if p != "body") or "body"
        if e.get("type") == "json_invalid":  # loc holds a character position, not a field
            loc = "body"
        details.append({"field": loc, "message": e.get("msg", ""), "type": e.get("type", "")})
    return "; ".join(f"{d['field']}: {d['message']}" for d in details), details


def _allowed_methods(request: Request) -> list[str]:
    from starlette.routing import Match

    methods: set[str] = set()
    for route in request.app.router.routes:
        if route.matches(request.scope)[0] != Match.NONE:
            methods |= set(getattr(route, "methods", None) or ())
    return sorted(methods)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        message, details = _validation_message(exc.errors())
        ctype = request.headers.get("content-type", "")
        if "json" not in ctype and any(d["field"] == "body" for d in details):
            message = f"send JSON with 'Content-Type: application/json' (got {ctype!r}); {message}"
        return error_response(422, "validation_error", message, details, path=request.url.path)

    @app.exception_handler(StarletteHTTPException)  # FastAPI's HTTPException, 404s, 405s
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _CODES.get(exc.status_code, "error")
        headers = exc.headers
        if exc.status_code == 405:  # Starlette names only the first route's methods
            headers = {**(headers or {}), "Allow": ", ".join(_allowed_methods(request))}
        return error_response(
            exc.status_code, code, str(exc.detail), headers=headers, path=request.url.path
        )

    @app.exception_handler(IndexCorruptError)  # a file damaged under the running server
    async def damaged(request: Request, exc: IndexCorruptError) -> JSONResponse:
        logger.error("damaged index file on %s %s: %s", request.method, request.url.path, exc)
        return error_response(500, "index_corrupt", str(exc), path=request.url.path)

    @app.exception_handler(RagError)
    async def rag_error(request: Request, exc: RagError) -> JSONResponse:
        status, code = rag_error_status(exc)
        return error_response(status, code, str(exc), path=request.url.path)

    @app.exception_handler(Exception)
    async def crash(request: Request, exc: Exception) -> JSONResponse:
        logger.exception("unhandled error on %s %s", request.method, request.url.path)
        return error_response(
            500, "internal_error", "internal server error (see the server log)",
            path=request.url.path,
        )
