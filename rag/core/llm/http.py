"""The HTTP backend of the LLM runtime: a client for any OpenAI-compatible
``/v1/chat/completions`` server (vLLM's server, llama.cpp's ``llama-server``, Ollama,
``transformers serve``, ``rag serve``).

It holds no weights, so there is nothing to share across nodes: each
:class:`rag.generators.OpenAICompatibleGenerator` owns one client. It offers what the server
offers through that route, a whole answer (:meth:`HTTPLLM.complete`) or its SSE stream
(:meth:`HTTPLLM.chunks`); no next-token distribution by token id.

Transport: connect/read timeouts; bounded retries with exponential backoff on connect errors,
429 and 5xx (never on other 4xx, never once a stream has started yielding); the API key is read
from the environment variable named by ``api_key_env`` (configs store the name, never the key).
Every failure is a :class:`HTTPGeneratorError` naming the URL and the status.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import AsyncGenerator, AsyncIterator, Generator, Iterator
from typing import Any

from rag.core.errors import ConfigError, GenerationError

RETRY_STATUS = frozenset({408, 429, 500, 502, 503, 504})


class HTTPGeneratorError(GenerationError):
    """The server could not be reached, timed out, or answered with an error status."""

    def __init__(self, message: str, status: int | None = None, attempts: int = 1) -> None:
        super().__init__(message)
        self.status = status
        self.attempts = attempts


class HTTPLLM:
    """One OpenAI-compatible chat-completions endpoint.

    Args:
        base_url: the API root, e.g. ``http://127.0.0.1:8000/v1``.
        api_key_env: environment variable holding the API key (``None``: no key).
        timeout: seconds to wait for the response (and between stream chunks).
        connect_timeout: seconds to wait for a connection.
        max_retries: retries after the first attempt on connect errors, timeouts, 408/429/5xx.
        backoff: first retry delay in seconds, doubled each retry (``Retry-After`` wins, <= 30 s).
        transport: an ``httpx`` transport to use instead of the network.
    """

    backend = "http"

    def __init__(
        self,
        base_url: str,
        api_key_env: str | None = None,
        timeout: float = 60.0,
        connect_timeout: float = 5.0,
        max_retries: int = 2,
        backoff: float = 0.5,
        transport: Any = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.api_key_env = api_key_env
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self.max_retries = max_retries
        self.backoff = backoff
        self.transport = transport
        self.client: Any = None

    @property
    def url(self) -> str:
        return f"{self.base_url}/chat/completions"

    def load(self) -> HTTPLLM:
        """Open the connection pool (idempotent); returns ``self``."""
        if self.client is None:
            import httpx

            self.httpx = httpx
            self.client = httpx.Client(
                timeout=httpx.Timeout(self.timeout, connect=self.connect_timeout),
                transport=self.transport,
            )
        return self

    def close(self) -> None:
        if self.client is not None:
            self.client.close()
            self.client = None

    def headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json"}
        if self.api_key_env is not None:
            key = os.environ.get(self.api_key_env)
            if not key:
                raise ConfigError(
                    f"api_key_env={self.api_key_env!r} but that environment variable is not set"
                )
            headers["Authorization"] = f"Bearer {key}"
        return headers

    def _failure(
        self, attempt: int, exc: BaseException | None = None, resp: Any = None
    ) -> tuple[HTTPGeneratorError, float, bool]:
        """(the error, the delay before the next attempt, whether to retry) of one attempt."""
        httpx = self.httpx
        delay = self.backoff * 2 ** (attempt - 1)
        if isinstance(exc, httpx.TimeoutException):
            return HTTPGeneratorError(
                f"{self.url} timed out after {attempt} attempt(s) "
                f"(timeout={self.timeout}s, connect_timeout={self.connect_timeout}s): {exc!r}",
                attempts=attempt,
            ), delay, True
        if exc is not None:
            return HTTPGeneratorError(
                f"cannot reach {self.url} after {attempt} attempt(s): {exc!r}; is the server "
                "running and is base_url right?",
                attempts=attempt,
            ), delay, True
        err = HTTPGeneratorError(
            f"{self.url} answered HTTP {resp.status_code} after {attempt} attempt(s): "
            f"{_error_detail(resp)}",
            status=resp.status_code,
            attempts=attempt,
        )
        retry_after = resp.headers.get("retry-after", "")
        if retry_after.replace(".", "", 1).isdigit():
            delay = min(float(retry_after), 30.0)
        return err, delay, resp.status_code in RETRY_STATUS

    def send(self, body: dict[str, Any]) -> Any:
        """POST with retries; returns an open ``httpx.Response`` with a 2xx status (the caller
        closes it). Streaming requests are only retried before their first byte is read."""
        self.load()
        attempts = self.max_retries + 1
        for attempt in range(1, attempts + 1):
            try:
                req = self.client.build_request("POST", self.url, json=body, headers=self.headers())
                resp = self.client.send(req, stream=True)
            except self.httpx.TransportError as e:
                err, delay, retry = self._failure(attempt, exc=e)
            else:
                if resp.status_code < 400:
                    return resp
                err, delay, retry = self._failure(attempt, resp=resp)
            if not retry or attempt == attempts:
                raise err
            time.sleep(delay)
        raise AssertionError("unreachable")  # pragma: no cover

    # -- async (httpx.AsyncClient): what the server and Pipeline.astream use ----------------------
    def _aclient(self) -> Any:
        """One ``httpx.AsyncClient`` per event loop (a client is bound to the loop it runs on)."""
        import asyncio

        import httpx

        self.httpx = httpx
        loop = asyncio.get_running_loop()
        if getattr(self, "_aloop", None) is not loop:
            self._aloop = loop
            self._async = httpx.AsyncClient(
                timeout=httpx.Timeout(self.timeout, connect=self.connect_timeout),
                transport=self.transport if isinstance(self.transport, httpx.AsyncBaseTransport)
                else None,
            )
        return self._async

    async def asend(self, body: dict[str, Any]) -> Any:
        """:meth:`send` on the event loop."""
        import asyncio

        client = self._aclient()
        attempts = self.max_retries + 1
        for attempt in range(1, attempts + 1):
            try:
                req = client.build_request("POST", self.url, json=body, headers=self.headers())
                resp = await client.send(req, stream=True)
            except self.httpx.TransportError as e:
                err, delay, retry = self._failure(attempt, exc=e)
            else:
                if resp.status_code < 400:
                    return resp
                await resp.aread()
                err, delay, retry = self._failure(attempt, resp=resp)
            if not retry or attempt == attempts:
                raise err
            await asyncio.sleep(delay)
        raise AssertionError("unreachable")  # pragma: no cover

    async def achunks(self, body: dict[str, Any]) -> AsyncGenerator[dict[str, Any], None]:
        """The JSON chunks of one streamed request; the response is closed (the server stops
        generating) as soon as the consumer stops or is cancelled."""
        resp = await self.asend(body)
        try:
            async for line in _aiter_lines(resp, self.url, self.httpx):
                if (data := _event_json(line, self.url)) is _END:
                    return
                if data is not None:
                    yield data
        finally:
            await resp.aclose()

    def complete(self, body: dict[str, Any]) -> Any:
        """The decoded JSON answer to a non-streamed request."""
        resp = self.send(body)
        try:
            resp.read()
            return resp.json()
        except self.httpx.TimeoutException as e:
            raise HTTPGeneratorError(
                f"{self.url} timed out while sending its answer (timeout={self.timeout}s): {e!r}"
            ) from e
        except (ValueError, self.httpx.HTTPError) as e:
            raise HTTPGeneratorError(f"{self.url} sent a response that is not JSON: {e!r}") from e
        finally:
            resp.close()

    def chunks(self, body: dict[str, Any]) -> Generator[dict[str, Any], None, None]:
        """The JSON chunks of one streamed request; the response is closed when the consumer
        stops early."""
        resp = self.send(body)
        try:
            yield from sse_json(resp, self.url, self.httpx)
        finally:
            resp.close()


def _error_detail(resp: Any) -> str:
    try:
        resp.read()
        data = resp.json()
        err = data.get("error", data) if isinstance(data, dict) else data
        msg = err.get("message", err) if isinstance(err, dict) else err
        text = msg if isinstance(msg, str) else json.dumps(msg)
    except Exception:  # the body is not JSON (or cannot be read): show its start
        try:
            text = resp.text
        except Exception:
            text = ""
    finally:
        resp.close()
    return text[:300] or "(empty body)"


_END: Any = object()


def _event_json(line: str, url: str) -> Any:
    """One SSE line: its JSON payload, ``None`` for lines without one, ``_END`` at [DONE]."""
    if not line.startswith("data:"):
        return None  # blank separators, comments (": ping"), "event:" lines
    payload = line[5:].strip()
    if payload == "[DONE]":
        return _END
    if not payload:
        return None
    try:
        data = json.loads(payload)
    except json.JSONDecodeError as e:
        raise HTTPGeneratorError(f"{url} sent a malformed stream event: {payload[:200]}") from e
    if isinstance(data, dict) and "error" in data:
        raise HTTPGeneratorError(f"{url} reported an error mid-stream: {data['error']}")
    return data


def sse_json(resp: Any, url: str, httpx: Any) -> Iterator[dict[str, Any]]:
    """The JSON payloads of a server-sent-event stream, until ``data: [DONE]``."""
    try:
        for line in resp.iter_lines():
            data = _event_json(line, url)
            if data is _END:
                return
            if data is not None:
                yield data
    except httpx.TimeoutException as e:
        raise _stalled(url, e) from e
    except httpx.TransportError as e:
        raise HTTPGeneratorError(f"{url} stream broke off: {e!r}") from e


async def _aiter_lines(resp: Any, url: str, httpx: Any) -> AsyncIterator[str]:
    try:
        async for line in resp.aiter_lines():
            yield line
    except httpx.TimeoutException as e:
        raise _stalled(url, e) from e
    except httpx.TransportError as e:
        raise HTTPGeneratorError(f"{url} stream broke off: {e!r}") from e


def _stalled(url: str, e: BaseException) -> HTTPGeneratorError:
    return HTTPGeneratorError(
        f"{url} stream stalled for over the read timeout (raise timeout= for a slow model): {e!r}"
    )
