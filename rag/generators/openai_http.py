"""A client for any OpenAI-compatible ``/v1/chat/completions`` server (vLLM's server, llama.cpp's
``llama-server``, Ollama, ``transformers serve``) behind the Generator contract.

Same interface as :class:`~rag.generators.TransformersGenerator`: ``generate``/``stream`` over chat
messages, with ``max_new_tokens``, ``temperature`` and ``stop`` overridable per call. Stop strings
are sent to the server *and* applied to the returned text, because servers differ in whether the
stop string is included in the output (``transformers serve`` keeps it).

Transport (:class:`rag.core.llm.http.HTTPLLM`, the HTTP backend of the LLM runtime): connect/read
timeouts; bounded retries with exponential backoff on connect errors, 429 and 5xx (never on other
4xx, never once a stream has started yielding); SSE streaming; the API key is read from the
environment variable named by ``api_key_env`` (the config stores the name, never the key). Every
failure is a :class:`HTTPGeneratorError` naming the URL and the status.

Native tool calling: ``complete(messages, tools=[...])`` returns a :class:`Completion` whose
``tool_calls`` are parsed :class:`ToolCall` objects (arguments decoded from JSON). With
``native_tools=True`` the generator declares ``supports_tools`` and ``generate(messages,
tools=[...])`` returns the assistant message ``{"role", "content", "tool_calls"}``, which is what
:class:`rag.app.agent.Agent` (``rag chat --agent``) sends its search/fetch tools through instead of
its JSON prompt. Turn it on for servers that return ``tool_calls`` (vLLM with a tool parser,
llama.cpp with ``--jinja``, Ollama, OpenAI, ``rag serve``'s own ``/v1``).

>>> gen = OpenAICompatibleGenerator(base_url="http://127.0.0.1:8000/v1", model="smollm2")
>>> gen.generate([{"role": "user", "content": "Say hi."}])      # doctest: +SKIP
'Hello!'
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field

from rag.core.concurrency import current_cancel
from rag.core.errors import ConfigError
from rag.core.llm.http import HTTPLLM, RETRY_STATUS, HTTPGeneratorError
from rag.generators.base import (
    BaseGenerator,
    Messages,
    Sampling,
    StopFilter,
    check_messages,
    cut_at_stop,
)

__all__ = [
    "RETRY_STATUS",
    "Completion",
    "HTTPGeneratorError",
    "OpenAICompatibleGenerator",
    "ToolCall",
    "parse_tool_calls",
    "tool_call_dicts",
]


class ToolCall(BaseModel):
    """One tool call the model asked for (OpenAI ``tool_calls[i]``), arguments JSON-decoded.

    ``arguments`` is ``{}`` when the model sent none; ``raw_arguments`` keeps the text as sent, and
    ``arguments_error`` says why it could not be decoded (then ``arguments`` is ``{}``)."""

    model_config = ConfigDict(frozen=True)
    id: str
    name: str
    arguments: dict[str, Any] = Field(default_factory=dict)
    raw_arguments: str = ""
    arguments_error: str | None = None


class Completion(BaseModel):
    """A full assistant turn: text (stop strings applied), tool calls, why it ended, usage.

    ``usage`` is what the server reported, as it reported it: the OpenAI spec makes it optional
    (a streamed one comes only on ``stream_options.include_usage``, which ``stream_events``
    asks for) and servers differ in its keys, so it may be empty or partial; read counts through
    :attr:`completion_tokens` / :attr:`prompt_tokens` (None when not reported)."""

    model_config = ConfigDict(frozen=True)
    text: str
    tool_calls: tuple[ToolCall, ...] = ()
    finish_reason: str | None = None
    usage: dict[str, Any] = Field(default_factory=dict)
    model: str = ""

    @property
    def completion_tokens(self) -> int | None:
        return _count(self.usage.get("completion_tokens"))

    @property
    def prompt_tokens(self) -> int | None:
        return _count(self.usage.get("prompt_tokens"))


def _count(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def parse_tool_calls(raw: Sequence[dict[str, Any]] | None) -> tuple[ToolCall, ...]:
    """OpenAI ``message.tool_calls`` (or accumulated stream deltas) -> :class:`ToolCall` s."""
    out = []
    for i, tc in enumerate(raw or ()):
        fn = tc.get("function") or {}
        args = fn.get("arguments")
        text = args if isinstance(args, str) else json.dumps(args or {})
        parsed: dict[str, Any] = {}
        error = None
        if isinstance(args, dict):
            parsed = args
        elif text.strip():
            try:
                value = json.loads(text)
                parsed = value if isinstance(value, dict) else {"value": value}
            except json.JSONDecodeError as e:
                error = f"arguments are not valid JSON: {e}"
        out.append(
            ToolCall(
                id=str(tc.get("id") or f"call_{i}"),
                name=str(fn.get("name") or ""),
                arguments=parsed,
                raw_arguments=text,
                arguments_error=error,
            )
        )
    return tuple(out)


def tool_call_dicts(completion: Completion) -> list[dict[str, Any]]:
    """A completion's tool calls in OpenAI's message shape (arguments as JSON text)."""
    return [
        {
            "id": c.id,
            "type": "function",
            "function": {"name": c.name, "arguments": c.raw_arguments or json.dumps(c.arguments)},
        }
        for c in completion.tool_calls
    ]


def _merge_tool_deltas(acc: dict[int, dict[str, Any]], deltas: Sequence[dict[str, Any]]) -> None:
    """Streamed tool calls arrive in pieces keyed by ``index``; concatenate name/argument text."""
    for d in deltas:
        slot = acc.setdefault(
            int(d.get("index", len(acc))), {"id": "", "function": {"name": "", "arguments": ""}}
        )
        if d.get("id"):
            slot["id"] = d["id"]
        fn = d.get("function") or {}
        if fn.get("name"):
            slot["function"]["name"] += fn["name"]
        args = fn.get("arguments")
        if isinstance(args, dict):  # some servers send decoded arguments in one piece
            slot["function"]["arguments"] = args
        elif args:
            slot["function"]["arguments"] += args


class OpenAICompatibleGenerator(BaseGenerator):
    """Chat completions over HTTP from an OpenAI-compatible server.

    Args:
        base_url: the API root, e.g. ``http://127.0.0.1:8000/v1`` (``/chat/completions`` is added).
        model: model name sent with each request (``None``: omitted; servers serving one model
            accept that).
        max_new_tokens: default ``max_tokens`` (override per call).
        temperature: 0 means greedy decoding.
        stop: stop strings (not included in the output).
        api_key_env: name of the environment variable holding the API key (``None``: no key).
        timeout: seconds to wait for the server's response (and between stream chunks).
        connect_timeout: seconds to wait for a connection.
        max_retries: retries after the first attempt on connect errors, timeouts, 408/429/5xx.
        backoff: first retry delay in seconds, doubled each retry (a server's ``Retry-After``
            header wins, capped at 30 s).
        extra_body: extra JSON fields merged into every request (``top_p``, ``seed``, ...).
        native_tools: the server returns OpenAI ``tool_calls``: declare ``supports_tools``.
    """

    name: ClassVar[str] = "openai_http_generator"
    requires: ClassVar[tuple[str, ...]] = ("httpx",)

    def __init__(
        self,
        base_url: str = "http://127.0.0.1:8000/v1",
        model: str | None = None,
        max_new_tokens: int = 256,
        temperature: float = 0.0,
        stop: list[str] | None = None,
        api_key_env: str | None = None,
        timeout: float = 60.0,
        connect_timeout: float = 5.0,
        max_retries: int = 2,
        backoff: float = 0.5,
        extra_body: dict[str, Any] | None = None,
        native_tools: bool = False,
    ) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise ConfigError(f"base_url must start with http:// or https://, got {base_url!r}")
        super().__init__(max_new_tokens, temperature, stop)
        if timeout <= 0 or connect_timeout <= 0:
            raise ConfigError(f"timeouts must be > 0, got {timeout} and {connect_timeout}")
        if isinstance(max_retries, bool) or not isinstance(max_retries, int) or max_retries < 0:
            raise ConfigError(f"max_retries must be an int >= 0, got {max_retries!r}")
        if backoff < 0:
            raise ConfigError(f"backoff must be >= 0, got {backoff}")
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.api_key_env = api_key_env
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self.max_retries = max_retries
        self.backoff = backoff
        self.extra_body = dict(extra_body or {})
        self.native_tools = bool(native_tools)
        self.transport: Any = None  # an httpx transport to use instead of the network (tests)

    @property
    def supports_tools(self) -> bool:
        """Whether :meth:`generate` takes ``tools=`` (the agent then calls tools natively)."""
        return self.native_tools

    @property
    def url(self) -> str:
        return f"{self.base_url}/chat/completions"

    def _load(self) -> None:
        self.runtime = HTTPLLM(
            self.base_url,
            self.api_key_env,
            self.timeout,
            self.connect_timeout,
            self.max_retries,
            self.backoff,
            self.transport,
        ).load()

    def close(self) -> None:
        if self._loaded:
            self.runtime.close()
            self._loaded = False

    def _body(
        self,
        messages: Messages,
        s: Sampling,
        tools: Sequence[dict[str, Any]] | None,
        tool_choice: str | dict[str, Any] | None,
        stream: bool,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {
            **self.extra_body,
            "messages": messages,
            "max_tokens": s.max_new_tokens,
            "temperature": s.temperature,
            "stream": stream,
        }
        if self.model is not None:
            body["model"] = self.model
        if s.stop:
            body["stop"] = list(s.stop)[:4]  # OpenAI accepts at most 4; all are applied locally
        if tools:
            body["tools"] = list(tools)
            if tool_choice is not None:
                body["tool_choice"] = tool_choice
        return body

    # -- the Generator contract -----------------------------------------------------------------
    def complete(
        self,
        messages: Messages | str,
        max_new_tokens: int | None = None,
        temperature: float | None = None,
        stop: Sequence[str] | None = None,
        tools: Sequence[dict[str, Any]] | None = None,
        tool_choice: str | dict[str, Any] | None = None,
    ) -> Completion:
        """One non-streamed assistant turn, with the tool calls it makes (``tools`` in OpenAI's
        schema: ``[{"type": "function", "function": {"name", "description", "parameters"}}]``)."""
        msgs = check_messages(messages)
        s = self.sampling(max_new_tokens, temperature, stop)
        self.load()
        data = self.runtime.complete(self._body(msgs, s, tools, tool_choice, False))
        try:
            choice = data["choices"][0]
            message = choice.get("message") or {}
        except (KeyError, IndexError, TypeError) as e:
            raise HTTPGeneratorError(f"{self.url} sent no choices: {str(data)[:200]}") from e
        text, stopped = cut_at_stop(message.get("content") or "", s.stop)
        return Completion(
            text=text,
            tool_calls=parse_tool_calls(message.get("tool_calls")),
            finish_reason="stop" if stopped else choice.get("finish_reason"),
            usage=data.get("usage") or {},
            model=str(data.get("model") or self.model or ""),
        )

    def generate(
        self,
        messages: Messages | str,
        max_new_tokens: int | None = None,
        temperature: float | None = None,
        stop: Sequence[str] | None = None,
        tools: Sequence[dict[str, Any]] | None = None,
        tool_choice: str | dict[str, Any] | None = None,
    ) -> Any:
        """The reply's text; with ``tools``, the assistant message ``{"role", "content",
        "tool_calls"}`` (OpenAI's shape, arguments as JSON text) the agent loop reads.

        Overrides the base's ``"".join(stream(...))`` for the transport only: one non-streamed
        request (tool calls arrive whole); the text is the same as the joined stream's."""
        out = self.complete(messages, max_new_tokens, temperature, stop, tools, tool_choice)
        if not tools:
            return out.text
        return {"role": "assistant", "content": out.text, "tool_calls": tool_call_dicts(out)}

    def _stream(self, messages: Messages, sampling: Sampling) -> Iterator[str]:
        """The text deltas of the server's SSE stream (stops are applied by the base)."""
        chunks = self.runtime.chunks(self._body(messages, sampling, None, None, True))
        try:
            for chunk in chunks:
                yield "".join(
                    (choice.get("delta") or {}).get("content") or ""
                    for choice in chunk.get("choices") or ()
                )
        finally:
            chunks.close()

    async def astream(
        self,
        messages: Messages | str,
        max_new_tokens: int | None = None,
        temperature: float | None = None,
        stop: Sequence[str] | None = None,
    ) -> AsyncIterator[str]:
        """:meth:`stream` on the event loop (``httpx.AsyncClient``): no thread is held while the
        server generates, and closing this iterator (a client gone, a timeout) closes the
        response, which ends the generation on a server that notices (vLLM, llama.cpp)."""
        msgs = check_messages(messages)
        s = self.sampling(max_new_tokens, temperature, stop)
        self.load()
        shown = StopFilter(s.stop)
        cancel = current_cancel()
        chunks = self.runtime.achunks(self._body(msgs, s, None, None, True))
        try:
            async for chunk in chunks:
                if cancel is not None:
                    cancel.pieces += 1
                piece = "".join(
                    (choice.get("delta") or {}).get("content") or ""
                    for choice in chunk.get("choices") or ()
                )
                if out := shown.feed(piece):
                    yield out
                if shown.stopped:
                    return
            if rest := shown.flush():
                yield rest
        finally:
            await chunks.aclose()

    def stream_events(
        self,
        messages: Messages | str,
        max_new_tokens: int | None = None,
        temperature: float | None = None,
        stop: Sequence[str] | None = None,
        tools: Sequence[dict[str, Any]] | None = None,
        tool_choice: str | dict[str, Any] | None = None,
    ) -> Iterator[str | Completion]:
        """Yield text pieces as they arrive, then one final :class:`Completion` (full text, tool
        calls accumulated from the stream's deltas, finish reason, usage)."""
        msgs = check_messages(messages)
        s = self.sampling(max_new_tokens, temperature, stop)
        body = self._body(msgs, s, tools, tool_choice, True)
        # a streamed usage chunk is sent only on request (OpenAI, vLLM, `transformers serve`);
        # ``extra_body={"stream_options": None}`` sends none (a server that rejects the field)
        if "stream_options" not in body:
            body["stream_options"] = {"include_usage": True}
        elif body["stream_options"] is None:
            del body["stream_options"]
        return self._events(body, s.stop)

    def _events(self, body: dict[str, Any], stops: Sequence[str]) -> Iterator[str | Completion]:
        shown = StopFilter(stops)
        finish, model = None, ""
        usage: dict[str, Any] = {}
        calls: dict[int, dict[str, Any]] = {}
        chunks = self.load().runtime.chunks(body)
        try:
            for chunk in chunks:
                usage = chunk.get("usage") or usage
                model = chunk.get("model") or model
                piece = ""
                for choice in chunk.get("choices") or ():
                    delta = choice.get("delta") or {}
                    finish = choice.get("finish_reason") or finish
                    _merge_tool_deltas(calls, delta.get("tool_calls") or ())
                    piece += delta.get("content") or ""
                if out := shown.feed(piece):
                    yield out
                if shown.stopped:
                    finish = "stop"
                    break
            else:
                if rest := shown.flush():
                    yield rest
        finally:
            chunks.close()
        yield Completion(
            text=shown.text,
            tool_calls=parse_tool_calls([calls[i] for i in sorted(calls)]),
            finish_reason=finish,
            usage=usage,
            model=str(model or self.model or ""),
        )
