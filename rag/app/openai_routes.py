"""OpenAI-compatible routes on ``rag serve``: the ``openai`` SDK and chat front ends use an index.

::

    GET  /v1/models             the one model this server answers as (``ragnodes``)
    POST /v1/chat/completions   a grounded answer, JSON or SSE chunks (``data: [DONE]``)
    POST /v1/embeddings         vectors from the index's encoder (dense / hybrid indexes)

>>> client = openai.OpenAI(base_url="http://127.0.0.1:8000/v1", api_key=KEY)   # doctest: +SKIP
>>> r = client.chat.completions.create(model="ragnodes", messages=[{"role": "user",
...     "content": "Which planet is the largest?"}])                            # doctest: +SKIP
>>> r.choices[0].message.content, r.ragnodes["citations"]                      # doctest: +SKIP
('Jupiter is the largest planet [1].', [{'marker': 1, 'document_id': 'jupiter', ...}])

A chat completion is retrieval-augmented generation (Lewis et al., NeurIPS 2020) over the
conversation: the last user message is the question, earlier user/assistant pairs are the history
that :mod:`rag.app.chat` trims to a token budget and condenses a follow-up with (LlamaIndex's
condense-plus-context engine); the answer carries ``[n]`` markers, resolved in the ``ragnodes``
extension field (:class:`rag.app.openai_api.RagExtension`: the citations of
:mod:`rag.pipeline.citations`, with path, span, page and heading, from the same sources ``/ask``
uses, :meth:`rag.pipeline.Pipeline.sources`), as OpenAI ``url_citation`` annotations on the message,
in the ``X-Ragnodes-Citations`` header of a non-streamed answer, and, for clients that show only the
content, as a ``Sources:`` block at its end (model ``ragnodes+sources`` or
``ragnodes.sources_in_content``). Streaming follows OpenAI's
``chat.completion.chunk`` format: a role chunk, content deltas, a last chunk with
``finish_reason`` and the ``ragnodes`` field, a usage chunk when
``stream_options.include_usage``, then ``data: [DONE]``.

With ``tools`` the server acts as a tool-calling model instead (the client runs the tools): a
generator with ``supports_tools`` gets them natively; any other generator is prompted to reply
with one JSON object (:mod:`rag.app.toolcalls`, ReAct: Yao et al., ICLR 2023) and a call it writes
is returned as OpenAI ``tool_calls``. Token counts in ``usage`` use the generator's tokenizer when
it has one (else about four characters per token); ``temperature``, ``top_p`` and ``stop`` are
accepted and ignored (the server's generator settings apply). Auth, body limits and error
statuses are those of the other routes, with OpenAI's error body (:func:`openai_error`).
"""

from __future__ import annotations

import base64
import json
import logging
import time
import uuid
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from rag.app.api import filter_dict
from rag.app.chat import ChatEngine, Conversation, Turn, answer_messages, token_counter
from rag.app.openai_api import (
    ChatCompletionRequest,
    ChatMessage,
    EmbeddingsRequest,
    ModelCard,
    ModelList,
    OpenAIErrorResponse,
    RagExtension,
    Source,
    openai_error,
)
from rag.app.server_guards import rag_error_status
from rag.app.server_state import State
from rag.app.tool_turn import tool_turn
from rag.core.concurrency import aiterate
from rag.core.errors import NO_OUTPUT, ConfigError, GenerationError, InputError, RagError
from rag.core.types import Answer, Query, TraceStep
from rag.ingest.frameworks import find_encoder
from rag.pipeline.citations import locate, sources_block, url_citations

try:
    from fastapi import APIRouter, Request
    from fastapi.responses import JSONResponse, StreamingResponse
except ImportError:  # pragma: no cover - rag.app.server already required the extra
    raise

logger = logging.getLogger("ragnodes.server")

MODEL_ID = "ragnodes"
SOURCES_SUFFIX = "+sources"  # ragnodes+sources: the content ends with the cited sources
CITATIONS_HEADER = "X-Ragnodes-Citations"  # JSON citations, for clients that keep only headers
OPENAI_PREFIX = "/v1/"
ERRORS = {
    code: {"model": OpenAIErrorResponse, "description": what}
    for code, what in {
        400: "a ragnodes error (no generator, no encoder, bad filter)",
        401: "missing or wrong API key",
        413: "request body too large",
        422: "invalid input: param names the first bad field",
    }.items()
}


# -- conversation ---------------------------------------------------------------------------------
def split_conversation(messages: Sequence[ChatMessage]) -> tuple[list[Turn], str]:
    """(history turns, question) from OpenAI ``messages``. System messages are left out (the
    server's grounded answer prompt applies); consecutive user messages are joined."""
    turns: list[Turn] = []
    pending: list[str] = []
    for m in messages:
        if m.role == "user":
            pending.append(m.text())
        elif m.role == "assistant" and pending:
            q = "\n".join(pending)
            turns.append(Turn(question=q, answer=m.text(), query=q))
            pending = []
    if not pending or messages[-1].role != "user":
        raise InputError("the last message must be the user's question (role 'user')")
    question = "\n".join(pending)
    if not question.strip():
        raise InputError("the user's question is empty; send a non-empty message")
    return turns, question


def answer_turn(state: Any, req: ChatCompletionRequest) -> Iterator[str | Answer | dict[str, int]]:
    """Text pieces, the :class:`Answer`, then ``{"prompt_tokens", "completion_tokens"}``.
    Condensing runs before the read lock, retrieval under it, generation after it."""
    pipeline = state.pipeline
    if pipeline.generator is None:
        raise ConfigError("this server has no generator: start it with --model to answer")
    turns, question = split_conversation(req.messages)
    engine = ChatEngine(pipeline, conversation=Conversation(turns=tuple(turns)))
    history = engine.history(question)
    text, step = engine.standalone(question, history)
    opts = req.ragnodes
    k = opts.k if opts is not None and opts.k is not None else pipeline.k
    flt = filter_dict(opts.filter) if opts is not None else None
    q = Query(text=text)
    t0 = time.perf_counter()
    with state.lock.reading():
        hits = pipeline.sources(q, pipeline.search(q, k=k, filter=flt).hits)  # as /ask does
    found = TraceStep(action="search", query=q.text, document_ids=tuple(h.id for h in hits))
    messages = answer_messages(pipeline, q, hits, history)
    timings = {"retrieve_s": time.perf_counter() - t0}
    answer = None
    for item in pipeline.stream_answer(
        q, hits, messages, None, timings, (step, found), req.token_limit
    ):
        if isinstance(item, Answer):
            answer = item
        yield item
    if answer is not None:
        count = token_counter(pipeline.generator)
        yield {
            "prompt_tokens": sum(count(m["content"]) for m in messages),
            "completion_tokens": count(answer.text),
        }


def wants_sources(req: ChatCompletionRequest) -> bool:
    """A ``Sources:`` block in the content: ``ragnodes.sources_in_content``, else the model
    name ``ragnodes+sources`` (what a chat front end can pick from ``/v1/models``)."""
    opts = req.ragnodes
    if opts is not None and opts.sources_in_content is not None:
        return opts.sources_in_content
    return (req.model or "").endswith(SOURCES_SUFFIX)


def extension(answer: Answer) -> dict[str, Any]:
    sources = [
        Source(n=n, document_id=h.id, title=h.document.title, score=h.score, **locate(h.document))
        for n, h in enumerate(answer.contexts, 1)
    ]
    query = next((s.query for s in answer.trace if s.action == "search"), answer.query.text)
    ext = RagExtension(
        citations=list(answer.citations),
        sources=sources,
        query=query,
        invalid_markers=list(answer.invalid_markers),
    )
    return ext.model_dump()


# -- responses ------------------------------------------------------------------------------------
class _Completion:
    """The id, timestamp and model name shared by one response's body or chunks."""

    def __init__(self, model: str | None) -> None:
        self.id = f"chatcmpl-{uuid.uuid4().hex}"
        self.created = int(time.time())
        self.model = model or MODEL_ID

    def body(
        self,
        content: str | None,
        finish: str,
        usage: dict[str, int] | None,
        tool_calls: list[dict] | None = None,
        ext: dict | None = None,
        notes: list[dict] | None = None,
    ) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant", "content": content}
        if notes:
            message["annotations"] = notes
        if tool_calls:
            message["tool_calls"] = tool_calls
        out = {
            "id": self.id,
            "object": "chat.completion",
            "created": self.created,
            "model": self.model,
            "choices": [
                {"index": 0, "message": message, "finish_reason": finish, "logprobs": None}
            ],
            "usage": _usage(usage),
        }
        if ext is not None:
            out["ragnodes"] = ext
        return out

    def chunk(self, delta: dict[str, Any], finish: str | None = None, **extra: Any) -> str:
        choices = [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}]
        body = {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": choices if delta is not None else [],
            **extra,
        }
        return f"data: {json.dumps(body)}\n\n"


def _usage(usage: dict[str, int] | None) -> dict[str, int]:
    u = usage or {"prompt_tokens": 0, "completion_tokens": 0}
    return {**u, "total_tokens": u["prompt_tokens"] + u["completion_tokens"]}


def _finish(answer: Answer, usage: dict[str, int], limit: int | None) -> str:
    return "length" if limit is not None and usage["completion_tokens"] >= limit else "stop"


def _events(state: Any, req: ChatCompletionRequest, c: _Completion) -> Iterator[str]:
    """The SSE chunks of one streamed completion; an error becomes one ``error`` chunk."""
    include_usage = bool((req.stream_options or {}).get("include_usage"))
    try:
        yield c.chunk({"role": "assistant", "content": ""})
        if req.tools and req.tool_choice != "none":
            text, calls, finish = _tool_turn(state.pipeline.generator, req)
            if text:
                yield c.chunk({"content": text})
            if calls:
                yield c.chunk({"tool_calls": [{"index": i, **t} for i, t in enumerate(calls)]})
            yield c.chunk({}, finish)
        else:
            answer, usage = None, None
            for item in answer_turn(state, req):
                if isinstance(item, str):
                    yield c.chunk({"content": item})
                elif isinstance(item, Answer):
                    answer = item
                else:
                    usage = item
            if answer is None or usage is None:
                raise GenerationError(NO_OUTPUT)
            yield from _last_chunks(req, c, answer, usage)
            if include_usage:
                yield c.chunk(None, usage=_usage(usage))  # type: ignore[arg-type]
    except RagError as e:
        status, code = rag_error_status(e)
        yield f"data: {json.dumps(openai_error(status, code, str(e)))}\n\n"
    except Exception:
        logger.exception("unhandled error while streaming a chat completion")
        err = openai_error(500, "internal_error", "internal server error (see the server log)")
        yield f"data: {json.dumps(err)}\n\n"
    yield "data: [DONE]\n\n"


def _last_chunks(
    req: ChatCompletionRequest, c: _Completion, answer: Answer, usage: dict[str, int]
) -> Iterator[str]:
    """The sources block (on request), then the chunk with ``finish_reason``, the
    ``url_citation`` annotations and the ``ragnodes`` extension."""
    if wants_sources(req) and (block := sources_block(answer.citations)):
        yield c.chunk({"content": block})
    last: dict[str, Any] = {}
    if notes := url_citations(answer.text, answer.citations):
        last["annotations"] = notes
    yield c.chunk(last, _finish(answer, usage, req.token_limit), ragnodes=extension(answer))


def _tool_turn(generator: Any, req: ChatCompletionRequest) -> tuple[str, list[dict], str]:
    messages = [m.model_dump(exclude_none=True) for m in req.messages]
    return tool_turn(generator, messages, req.tools or [], req.token_limit)


def _complete(state: Any, req: ChatCompletionRequest, c: _Completion) -> dict[str, Any]:
    if req.tools and req.tool_choice != "none":
        text, calls, finish = _tool_turn(state.pipeline.generator, req)
        return c.body(text or None, finish, None, calls)
    answer, usage = None, None
    for item in answer_turn(state, req):
        if isinstance(item, Answer):
            answer = item
        elif isinstance(item, dict):
            usage = item
    if answer is None or usage is None:
        raise GenerationError(NO_OUTPUT)
    finish = _finish(answer, usage, req.token_limit)
    text = answer.text + (sources_block(answer.citations) if wants_sources(req) else "")
    notes = url_citations(answer.text, answer.citations)
    return c.body(text, finish, usage, ext=extension(answer), notes=notes)


async def _check_limits(state: Any, req: ChatCompletionRequest) -> None:
    from rag.app.server_limits import check_message_count, check_prompt_tokens

    check_message_count(state.limits, len(req.messages))
    texts = [m.content if isinstance(m.content, str) else json.dumps(m.content, default=str)
             for m in req.messages]
    await state.pool.run(check_prompt_tokens, state.limits, state.pipeline.generator, texts)


def _error_chunk(e: BaseException) -> str:
    """The stream's last events after a limit or an error (its 200 was already sent)."""
    if isinstance(e, RagError):
        status = int(getattr(e, "status", 400))
        err = openai_error(status, "timeout" if status == 408 else "bad_request", str(e))
    else:
        err = openai_error(500, "internal_error", "internal server error (see the server log)")
    return f"data: {json.dumps(err)}\n\ndata: [DONE]\n\n"


# -- embeddings -----------------------------------------------------------------------------------
def decode_token_ids(ids: list[list[int]], model: str | None) -> list[str]:
    """Token ids as text, with the tiktoken encoding OpenAI clients tokenized with: the one of
    ``model`` (``tiktoken.encoding_for_model``), else ``cl100k_base``, the fallback of LangChain's
    ``OpenAIEmbeddings`` and LlamaIndex. Without tiktoken (or its encoding file) a one-line 422
    that says how to send text instead."""
    from fastapi import HTTPException

    fix = (
        "send text instead: LangChain OpenAIEmbeddings(..., check_embedding_ctx_length=False), "
        "or pass strings as input"
    )
    try:
        import tiktoken
    except ImportError:
        raise HTTPException(422, f"token-id input needs tiktoken on the server; {fix}") from None
    try:
        try:
            enc = tiktoken.encoding_for_model(model or "")
        except KeyError:
            enc = tiktoken.get_encoding("cl100k_base")
        return [enc.decode(x) for x in ids]
    except Exception as e:  # no encoding file offline (tiktoken downloads it), a bad id
        reason = str(e).splitlines()[0][:120] if str(e) else type(e).__name__
        raise HTTPException(
            422, f"token-id input could not be decoded with tiktoken ({reason}); {fix}"
        ) from None


def embed(state: Any, req: EmbeddingsRequest) -> dict[str, Any]:
    encoder = find_encoder(state.pipeline)
    if encoder is None:
        raise ConfigError(
            f"this index ({state.pipeline.retriever.name}) has no text encoder: /v1/embeddings "
            "needs a dense or hybrid index"
        )
    texts = req.texts(decode=lambda ids: decode_token_ids(ids, req.model))
    encoder.load()
    if req.dimensions is not None and req.dimensions != encoder.dim:
        raise ConfigError(f"dimensions must be {encoder.dim} (the encoder's), got {req.dimensions}")
    vecs = np.asarray(encoder.encode(texts, kind=req.input_type), dtype="<f4")  # (n, dim)
    data = [
        {
            "object": "embedding",
            "index": i,
            "embedding": (
                base64.b64encode(v.tobytes()).decode("ascii")
                if req.encoding_format == "base64"
                else v.tolist()
            ),
        }
        for i, v in enumerate(vecs)
    ]
    tok = encoder.tokenizer
    n_tokens = sum(
        min(len(ids), encoder.max_length)
        for ids in tok(texts, add_special_tokens=True)["input_ids"]
    )
    return {
        "object": "list",
        "data": data,
        "model": req.model or str(encoder.model),
        "usage": {"prompt_tokens": n_tokens, "total_tokens": n_tokens},
    }


# -- the router -----------------------------------------------------------------------------------
def openai_router(model_id: str = MODEL_ID) -> APIRouter:
    """``/v1/models``, ``/v1/chat/completions``, ``/v1/embeddings``; mount it with
    :func:`rag.app.server.mount` (the API-key check) as :func:`rag.app.server.create_app` does."""
    router = APIRouter(prefix="/v1", tags=["openai"], responses=ERRORS)

    @router.get("/models", response_model=ModelList, summary="the model this server answers as")
    def models() -> ModelList:
        return ModelList(data=[ModelCard(id=model_id), ModelCard(id=model_id + SOURCES_SUFFIX)])

    @router.post(
        "/chat/completions",
        summary="OpenAI-compatible chat completion over the index (JSON or SSE)",
        responses={200: {"content": {"text/event-stream": {}}}},
    )
    async def chat_completions(req: ChatCompletionRequest, state: State) -> Any:
        # the limits first (422 at once), then the turn in a thread of its own that the
        # request's cancel stops (client gone, generation timeout, shutdown)
        await _check_limits(state, req)
        state.gates.check("generate")
        c = _Completion(req.model or model_id)
        if req.stream:
            return StreamingResponse(
                state.stream(lambda: aiterate(lambda: _events(state, req, c)), _error_chunk),
                media_type="text/event-stream",
                headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
            )
        body = await state.complete(lambda: aiterate(lambda: iter([_complete(state, req, c)])))
        cites = body.get("ragnodes", {}).get("citations", [])
        # LangChain's ChatOpenAI keeps no extension field, but keeps the response headers in
        # response_metadata["headers"] with include_response_headers=True
        return JSONResponse(body, headers={CITATIONS_HEADER: json.dumps(cites)})

    @router.post("/embeddings", summary="OpenAI-compatible embeddings with the index's encoder")
    def embeddings(req: EmbeddingsRequest, state: State) -> Any:
        return embed(state, req)

    return router


def is_openai_path(request: Request) -> bool:
    return request.url.path.startswith(OPENAI_PREFIX)
