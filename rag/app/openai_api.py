"""The wire models of the OpenAI-compatible routes (``/v1/...``), and OpenAI's error body.

Requests accept what the ``openai`` SDK and chat front ends send (unknown sampling fields such as
``top_p`` or ``seed`` are accepted and ignored, never an error); responses follow OpenAI's
``chat.completion`` / ``chat.completion.chunk`` / ``list`` objects, plus one documented
extension field, ``ragnodes`` (:class:`RagExtension`): the citations
(:class:`rag.core.types.Citation`, the shape ``/ask`` and ``/chat`` use) and the numbered sources
the answer's ``[n]`` markers point at. Request-side options go in the same field
(``extra_body={"ragnodes": {"k": 3}}``).

>>> openai_error(401, "unauthorized", "missing API key")["error"]["type"]
'authentication_error'
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from rag.app.api import FILTER_DESCRIPTION, MAX_BATCH, Filter, TopK
from rag.core.errors import ConfigError
from rag.core.types import Citation

_LENIENT = ConfigDict(extra="allow")  # clients send fields we do not use; they are ignored
_OUT = ConfigDict(extra="forbid")

# OpenAI's error "type" for an HTTP status (https://platform.openai.com/docs/guides/error-codes)
_TYPES = {
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    429: "rate_limit_error",
}


class OpenAIErrorDetail(BaseModel):
    model_config = _OUT
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class OpenAIErrorResponse(BaseModel):
    """Every 4xx/5xx body under ``/v1``: ``{"error": {"message", "type", "param", "code"}}``;
    ``code`` is the short code the other routes use (``validation_error``, ...)."""

    model_config = _OUT
    error: OpenAIErrorDetail


def openai_error(
    status: int, code: str, message: str, details: list[dict] | None = None
) -> dict[str, Any]:
    """OpenAI's error body; ``param`` names the first bad field of a validation error."""
    kind = _TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")
    param = next((d.get("field") for d in details or () if d.get("field")), None)
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


# -- requests -------------------------------------------------------------------------------------
class ChatMessage(BaseModel):
    """One message of ``messages``: text content (a string or ``text`` parts), or an
    assistant's ``tool_calls``, or a ``tool`` result."""

    model_config = _LENIENT
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[dict[str, Any]] | None = None
    name: str | None = None
    tool_calls: list[dict[str, Any]] | None = None
    tool_call_id: str | None = None

    def text(self) -> str:
        """The message's text; parts other than ``text`` (images, audio) are an error."""
        from rag.app.tool_turn import message_text

        return message_text(self.content)


class RagOptions(BaseModel):
    """``ragnodes`` request options: how many sources, a metadata filter, and whether the
    content ends with a ``Sources:`` block (also asked for by the model name
    ``ragnodes+sources``, for clients that send nothing but a model and messages)."""

    model_config = ConfigDict(extra="forbid")
    k: TopK | None = Field(None, description="sources for the answer (default: the index's k)")
    filter: Filter | None = Field(None, description=FILTER_DESCRIPTION)
    sources_in_content: bool | None = Field(
        None, description="append the cited sources (path#heading, path:page) to the content"
    )


class ChatCompletionRequest(BaseModel):
    """``POST /v1/chat/completions``. The last message is the question; earlier user/assistant
    pairs are the history (a follow-up is condensed into a standalone query). With ``tools`` the
    server answers as a model that may call them (no retrieval): natively when the generator
    supports tool calls, otherwise through the JSON tool-call prompt of :mod:`rag.app.toolcalls`."""

    model_config = _LENIENT
    model: str | None = None
    messages: list[ChatMessage] = Field(min_length=1)
    stream: bool = False
    stream_options: dict[str, Any] | None = None
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    n: int = Field(1, ge=1, le=1, description="one choice per request")
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    ragnodes: RagOptions | None = None

    @property
    def token_limit(self) -> int | None:
        if self.max_completion_tokens is not None:
            return self.max_completion_tokens
        return self.max_tokens


TokenIds = list[Annotated[int, Field(ge=0)]]


class EmbeddingsRequest(BaseModel):
    """``POST /v1/embeddings``: text(s) embedded with the index's encoder. ``input`` is what
    OpenAI's API accepts: a text, texts, token ids, or lists of token ids (what LangChain's
    ``OpenAIEmbeddings`` sends by default). Token ids are decoded with the tiktoken encoding of
    ``model`` (``cl100k_base`` for a name tiktoken does not know, as the OpenAI clients choose),
    then embedded as text. ``input_type`` (ragnodes) picks the query or document side of an
    asymmetric encoder."""

    model_config = _LENIENT
    input: str | list[str] | TokenIds | list[TokenIds] = Field(
        description="a text, up to 1000 texts, or token ids (one list or a list of lists)"
    )
    model: str | None = None
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(None, ge=1)
    input_type: Literal["query", "document"] = "document"

    def token_lists(self) -> list[list[int]] | None:
        """The input as lists of token ids, or ``None`` when it is text."""
        if isinstance(self.input, str) or not self.input or isinstance(self.input[0], str):
            return None
        if isinstance(self.input[0], int):
            return [list(self.input)]  # type: ignore[arg-type]
        return [list(ids) for ids in self.input]  # type: ignore[union-attr]

    def texts(self, decode: Any = None) -> list[str]:
        """The input texts; token ids are turned into text by ``decode(lists) -> texts``."""
        ids = self.token_lists()
        if ids is not None:
            if decode is None:
                raise ConfigError("token-id input needs a decoder")
            texts = list(decode(ids))
        else:
            texts = [self.input] if isinstance(self.input, str) else list(self.input)  # type: ignore[arg-type]
        if not texts or len(texts) > MAX_BATCH:
            raise ConfigError(f"input must hold 1 to {MAX_BATCH} texts, got {len(texts)}")
        if any(not t.strip() for t in texts):
            raise ConfigError("input texts must not be empty")
        return texts


# -- responses ------------------------------------------------------------------------------------
class Source(BaseModel):
    """A numbered source: the marker ``[n]`` in the answer points at source ``n``; where it sits
    as a citation of it would say (:func:`rag.pipeline.citations.locate`)."""

    model_config = _OUT
    n: int
    document_id: str
    title: str = ""
    score: float
    path: str = ""
    span: tuple[int, int] | None = None
    page: int | None = None
    heading: str = ""


class RagExtension(BaseModel):
    """The ``ragnodes`` field of a chat completion (and of the last chunk of a stream)."""

    model_config = _OUT
    citations: list[Citation] = Field(default_factory=list)
    sources: list[Source] = Field(default_factory=list)
    query: str = Field("", description="the query retrieved with (a follow-up, condensed)")
    invalid_markers: list[int] = Field(
        default_factory=list, description="markers that point at no source"
    )


class ModelCard(BaseModel):
    model_config = _OUT
    id: str
    object: Literal["model"] = "model"
    created: int = 0
    owned_by: str = "ragnodes"


class ModelList(BaseModel):
    model_config = _OUT
    object: Literal["list"] = "list"
    data: list[ModelCard]
