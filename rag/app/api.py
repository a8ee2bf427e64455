"""Request and response models shared by the HTTP server, the agent tools and the MCP server.

The HTTP API answers with the library's own value types (:class:`~rag.core.types.Ranking` for
``/search``, :class:`~rag.core.types.Answer` for ``/ask``); the agent tools answer with the compact
:class:`ToolHit` / :class:`ToolAnswer`, which a language model reads more easily. The argument
models double as the tools' JSON schemas (``SearchArgs.model_json_schema()``).

>>> SearchRequest(query="largest planet", k=3).k
3
>>> SearchRequest(query="   ")            # doctest: +SKIP
ValidationError: query ... String should match pattern '\\S'
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    WithJsonSchema,
    field_validator,
)

from rag.core.filters import FILTER_DESCRIPTION, FILTER_FIELD_SCHEMA
from rag.core.types import Answer, Citation, Document, Ranking
from rag.index.validate import MAX_ID_CHARS, check_metadata, check_text

# requests take JSON types as declared: "5" is not an int, 0 is not a bool
_STRICT = ConfigDict(frozen=True, extra="forbid", strict=True)
MAX_K = 100
MAX_TEXT = 4096  # characters of a query, question or instruction
MAX_BATCH = 1000  # documents per add request, ids per delete request

# a query or question: non-blank, bounded; shared by the models below and the MCP tool signatures
Text = Annotated[str, Field(min_length=1, max_length=MAX_TEXT, pattern=r"\S")]
TopK = Annotated[int, Field(ge=1, le=MAX_K), BeforeValidator(lambda v: _whole(v))]


def _whole(v: Any) -> Any:
    """JSON Schema counts 5.0 as an integer; strict pydantic does not. Accept whole floats."""
    return int(v) if isinstance(v, float) and v.is_integer() else v


def _parse_filter(v: Any) -> dict[str, Any] | None:
    from rag.core.filters import parse_filter

    return parse_filter(v)  # a ConfigError (a ValueError): one line in the 422


# the filter language of rag.core.filters (docs/filters.md): a JSON object, parsed by its one
# parser; FilterJSON is the unparsed object (the MCP server parses it itself, for a one-line tool
# error)
FilterJSON = Annotated[dict[str, Any], WithJsonSchema(FILTER_FIELD_SCHEMA)]
Filter = Annotated[FilterJSON, AfterValidator(_parse_filter)]


def filter_dict(flt: dict[str, Any] | None) -> dict[str, Any] | None:
    """A filter in canonical form (:func:`rag.core.filters.parse_filter`)."""
    return _parse_filter(flt)


class SearchArgs(BaseModel):
    """Arguments of the ``search`` tool: a query, how many passages, an optional filter."""

    model_config = _STRICT
    query: Text = Field(description="what to search for")
    k: TopK = Field(5, description="number of passages to return")
    filter: Filter | None = Field(None, description=FILTER_DESCRIPTION)

    def filter_dict(self) -> dict[str, Any] | None:
        """The filter in the retrievers' syntax (``retrievers.stores.filters``)."""
        return filter_dict(self.filter)


class FetchArgs(BaseModel):
    """Arguments of the ``fetch`` tool: one document id (as ``search`` returned it)."""

    model_config = _STRICT
    id: str = Field(min_length=1, max_length=512, description="a document id from search")


class AskArgs(BaseModel):
    """Arguments of the ``ask`` tool: a question answered from the indexed documents, whose
    sources an optional filter restricts."""

    model_config = _STRICT
    question: Text = Field(description="the question to answer")
    filter: Filter | None = Field(None, description=FILTER_DESCRIPTION)


class SearchRequest(SearchArgs):
    """``POST /search``: the tool's arguments plus an instruction."""

    instruction: str | None = Field(
        None, max_length=MAX_TEXT, description="what counts as relevant (optional)"
    )


class AskRequest(AskArgs):
    """``POST /ask``: a question; ``stream`` answers with server-sent events; ``filter``
    restricts the sources (the filter language of ``/search``)."""

    instruction: str | None = Field(None, max_length=MAX_TEXT)
    stream: bool = Field(
        False, description="stream `token` events, then one `answer` event (text/event-stream)"
    )


class DocumentIn(Document):
    """A :class:`~rag.core.types.Document` as the API accepts it: strict JSON types (the library's
    ``Document`` also takes an int id; over HTTP an id is a string, as the schema says)."""

    model_config = _STRICT
    id: str = Field(min_length=1, max_length=MAX_ID_CHARS)

    @field_validator("id", mode="before")
    @classmethod
    def _id_to_str(cls, v: Any) -> Any:  # overrides Document's coercion
        return v

    @field_validator("id", "text", "title")
    @classmethod
    def _utf8(cls, v: Any, info: Any) -> Any:
        if isinstance(v, str):
            check_text(v, info.field_name, "document")  # a lone surrogate: 422, not a 500
        return v

    @field_validator("metadata")
    @classmethod
    def _storable(cls, v: dict[str, Any]) -> dict[str, Any]:
        check_metadata(v, "metadata")  # depth and size limits of the index (422 when over)
        return v


class AddDocumentsRequest(BaseModel):
    """``POST /documents``: documents to index; an existing id is replaced."""

    model_config = _STRICT
    documents: list[DocumentIn] = Field(min_length=1, max_length=MAX_BATCH)


class DeleteDocumentsRequest(BaseModel):
    """``DELETE /documents``: ids to remove; unknown ids are counted, not an error."""

    model_config = _STRICT
    ids: list[str] = Field(min_length=1, max_length=MAX_BATCH)


class DocumentsResponse(BaseModel):
    model_config = _STRICT
    changed: int = Field(description="documents added, or deleted ids that were present")
    total: int = Field(description="documents in the index after the change")


class HealthResponse(BaseModel):
    model_config = _STRICT
    status: str
    documents: int
    retriever: str
    generator: bool


class ErrorResponse(BaseModel):
    """Every 4xx/5xx body: a short code, a message that states the fix, optional details."""

    model_config = _STRICT
    error: str
    message: str
    details: list[dict[str, Any]] = Field(default_factory=list)


class ToolHit(BaseModel):
    """One passage as a tool returns it to a language model."""

    model_config = _STRICT
    id: str
    title: str = ""
    text: str
    score: float


class SearchResult(BaseModel):
    model_config = _STRICT
    hits: list[ToolHit]


class ToolDocument(BaseModel):
    """One whole document as the ``fetch`` tool returns it."""

    model_config = _STRICT
    id: str
    title: str = ""
    text: str
    metadata: dict[str, Any] = Field(default_factory=dict)


class ToolAnswer(BaseModel):
    """An answer as a tool returns it; ``citations`` are :class:`rag.core.types.Citation` s, the
    shape ``/ask``, ``/chat`` and ``/v1/chat/completions`` use too."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    answer: str
    citations: list[Citation] = Field(default_factory=list)


def tool_hits(ranking: Ranking) -> SearchResult:
    return SearchResult(
        hits=[
            ToolHit(id=h.id, title=h.document.title, text=h.document.text, score=h.score)
            for h in ranking.hits
        ]
    )


def tool_answer(answer: Answer) -> ToolAnswer:
    return ToolAnswer(answer=answer.text, citations=list(answer.citations))


def tool_document(doc: Document) -> ToolDocument:
    return ToolDocument(id=doc.id, title=doc.title, text=doc.text, metadata=doc.metadata)


class ChatRequest(BaseModel):
    """``POST /chat``: one user message; send back the ``conversation_id`` of the last reply to
    continue that conversation (none starts a new one)."""

    model_config = _STRICT
    message: Text
    conversation_id: str | None = Field(None, min_length=1, max_length=128, pattern=r"^[\w.-]+$")
    agent: bool = Field(False, description="let the model call search/fetch tools (bounded)")
    stream: bool = Field(
        False, description="stream `token` events, then one `answer` event (text/event-stream)"
    )
