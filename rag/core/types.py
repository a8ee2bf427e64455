"""Value types that flow between nodes. All are frozen pydantic v2 models.

A :class:`Document` is indexed; a :class:`Query` goes through retrievers, rerankers and
compressors as a :class:`Ranking` (a query plus sorted :class:`Hit` s); a generator turns the final
ranking into an :class:`Answer` with :class:`Citation` s that point at document ids.

>>> d = Document(id="d1", text="BM25 is a bag-of-words ranking function.")
>>> r = Ranking(query=Query(text="what is bm25"), hits=(Hit(document=d, score=1.5),))
>>> r.ids
['d1']

Rankings are built on the hot path of every retriever (a batch of 300 BM25 queries makes 3,000
hits), so the library's own constructors skip validation for values it made itself
(:func:`trusted`): a node hands over ``(ids, scores)`` arrays (:class:`ScoredIds`) and
:meth:`Ranking.from_arrays` reads documents only for the top ``k`` it returns. The result is the
same frozen model, equal to (and serialised like) one built with validation.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, NamedTuple, TypeVar

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

_FROZEN = ConfigDict(frozen=True, extra="forbid")
_M = TypeVar("_M", bound=BaseModel)
_new = object.__new__
_set = object.__setattr__


def trusted(cls: type[_M], **fields: Any) -> _M:
    """An instance of the pydantic model ``cls`` from values that are already of the field types
    (every field given), with no validation: what ``model_construct`` does, about 5x cheaper
    (no defaults to fill, no aliases to resolve). Library-internal: callers pass values they
    built themselves. The instance equals, hashes and serialises like a validated one."""
    m = _new(cls)
    _set(m, "__dict__", fields)
    _set(m, "__pydantic_fields_set__", set(fields))
    _set(m, "__pydantic_extra__", None)
    _set(m, "__pydantic_private__", None)
    return m


class ScoredIds(NamedTuple):
    """One query's candidates as arrays, what a retriever's ``_search`` may return instead of
    ``(id, score)`` pairs: ``ids`` ``(n,)`` unique, ``scores`` ``(n,)`` float, any order.
    :meth:`Ranking.from_arrays` turns them into a ranking, reading documents only for its top k.

    >>> ScoredIds(["a", "b"], np.array([0.5, 2.0], dtype=np.float32)).scores.dtype
    dtype('float32')
    """

    ids: Sequence[str]
    scores: np.ndarray


class Document(BaseModel):
    """A unit of retrieval: ``id`` is unique within an index."""

    model_config = _FROZEN
    id: str
    text: str
    title: str = ""
    metadata: dict[str, Any] = Field(default_factory=dict)

    @field_validator("id", mode="before")
    @classmethod
    def _id_to_str(cls, v: Any) -> str:
        if isinstance(v, int) and not isinstance(v, bool):
            return str(v)
        return v

    @property
    def full_text(self) -> str:
        """``title + " " + text`` (BEIR's convention), or the text alone when untitled."""
        return f"{self.title} {self.text}" if self.title else self.text


class Query(BaseModel):
    """A question, with an optional instruction that states what counts as relevant."""

    model_config = _FROZEN
    text: str
    id: str = Field(default_factory=lambda: uuid.uuid4().hex[:12])
    instruction: str | None = None

    @field_validator("id", mode="before")
    @classmethod
    def _id_to_str(cls, v: Any) -> str:
        return str(v) if isinstance(v, int) and not isinstance(v, bool) else v


class Hit(BaseModel):
    """One scored document in a ranking."""

    model_config = _FROZEN
    document: Document
    score: float

    @property
    def id(self) -> str:
        return self.document.id


class Ranking(BaseModel):
    """The hits for one query, best first. ``stage`` names the node that produced it;
    ``provenance`` is that node's record of the call for this query (model, backend and prompt
    versions; counters such as a listwise reranker's windows; a think retriever's thought).
    Per-call records travel in the output, never on the node: one node serves concurrent
    requests."""

    model_config = _FROZEN
    query: Query
    hits: tuple[Hit, ...] = ()
    stage: str = ""
    provenance: dict[str, Any] = Field(default_factory=dict)

    @property
    def ids(self) -> list[str]:
        return [h.document.id for h in self.hits]

    @property
    def scores(self) -> list[float]:
        return [h.score for h in self.hits]

    def __len__(self) -> int:
        return len(self.hits)

    def top(self, k: int | None) -> Ranking:
        """The first ``k`` hits (all of them when ``k`` is None)."""
        if k is None or k >= len(self.hits):
            return self
        return trusted(
            Ranking,
            query=self.query,
            hits=self.hits[:k],
            stage=self.stage,
            provenance=self.provenance,
        )

    def arrays(self) -> ScoredIds:
        """The hits as ``(ids, scores float64)`` arrays, best first (fusion's input)."""
        hits = self.hits
        scores = np.fromiter((h.score for h in hits), np.float64, len(hits))
        return ScoredIds([h.document.id for h in hits], scores)

    @classmethod
    def from_arrays(
        cls,
        query: Query,
        ids: Sequence[str],
        scores: np.ndarray | Sequence[float],
        documents: Mapping[str, Document],
        k: int | None = None,
        stage: str = "",
    ) -> Ranking:
        """A ranking from unique ``ids`` and their ``scores`` (any order): sorted by score
        descending, ties by id ascending, cut to ``k``; ids missing from ``documents`` are
        dropped, and only the returned hits' documents are read (a document store decodes them
        on access, :mod:`rag.index.docstore`). Same result as :meth:`from_scored` on the pairs.

        >>> docs = {"a": Document(id="a", text="x"), "b": Document(id="b", text="y")}
        >>> Ranking.from_arrays(Query(text="q"), ["a", "b"], np.array([1.0, 1.0]), docs, k=1).ids
        ['a']
        """
        n = len(ids)
        want = n if k is None else k
        if n == 0 or want <= 0:
            return trusted(cls, query=query, hits=(), stage=stage, provenance={})
        s = np.asarray(scores)
        hits: list[Hit] = []
        if n > 256 and n > 4 * want:  # first the top ``want`` and every tie with the last one
            keep = np.flatnonzero(s >= np.partition(s, n - want)[n - want]).tolist()
            hits = _top_hits([ids[i] for i in keep], s[keep].tolist(), documents, want)
        if len(hits) < want:  # no cut, or ids missing from ``documents`` among the top
            hits = _top_hits(ids, s.tolist(), documents, want)
        return trusted(cls, query=query, hits=tuple(hits), stage=stage, provenance={})

    @classmethod
    def from_scored(
        cls,
        query: Query,
        scored: Iterable[tuple[Document, float]],
        k: int | None = None,
        stage: str = "",
    ) -> Ranking:
        """Build a ranking from ``(document, score)`` pairs: sorted by score descending, ties by
        document id ascending (deterministic); a repeated id keeps its highest score (and the
        document that came with it; the first one on a tie)."""
        if not isinstance(query, Query):
            raise TypeError(f"expected a Query, got {type(query).__name__}")
        best: dict[str, tuple[Document, float]] = {}
        for doc, score in scored:
            s = float(score)
            prev = best.get(doc.id)
            if prev is None or s > prev[1]:
                best[doc.id] = (doc, s)
        ordered = sorted(best.values(), key=lambda ds: (-ds[1], ds[0].id))
        if k is not None:
            ordered = ordered[:k]
        hits = tuple(trusted(Hit, document=d, score=s) for d, s in ordered)
        return trusted(cls, query=query, hits=hits, stage=stage, provenance={})


def _top_hits(
    ids: Sequence[str], scores: list[float], documents: Mapping[str, Document], want: int
) -> list[Hit]:
    """The first ``want`` hits by (score descending, id ascending) whose id is in ``documents``."""
    order: Sequence[int] = range(len(ids))
    if any(scores[i] <= scores[i + 1] for i in range(len(ids) - 1)):  # not strictly descending
        order = sorted(order, key=lambda i: (-scores[i], ids[i]))
    get, new, set_ = documents.get, _new, _set
    hits: list[Hit] = []
    for i in order:
        doc = get(ids[i])
        if doc is not None:  # trusted(Hit, ...) inlined: this loop builds every hit of a batch
            h = new(Hit)
            set_(h, "__dict__", {"document": doc, "score": scores[i]})
            set_(h, "__pydantic_fields_set__", {"document", "score"})
            set_(h, "__pydantic_extra__", None)
            set_(h, "__pydantic_private__", None)
            hits.append(h)
            if len(hits) == want:
                break
    return hits


class Citation(BaseModel):
    """A citation marker ``[n]`` in an answer, resolved to the n-th context's document.

    The one citation shape everywhere: ``Answer.citations``, ``/ask``, ``/chat``, the agent and
    MCP tools, and the ``ragnodes`` extension field of ``/v1/chat/completions``."""

    model_config = _FROZEN
    marker: int
    document_id: str
    title: str = ""  # the cited document's title (empty when untitled)
    source: str = "generated"  # "generated" by the model, or "attributed" after the fact
    # where the cited text sits (set for chunks of ingested files, rag.pipeline.context)
    path: str = ""
    span: tuple[int, int] | None = None  # [start, end) character offsets into the source text
    page: int | None = None
    heading: str = ""
    # support of the citing sentence by the cited span, by the judge named in ``judge``
    support: float | None = None
    judge: str = ""
    supported: bool | None = None

    @property
    def locator(self) -> str:
        """``path:page`` (PDF), ``path#heading``, the path, or the document id."""
        if not self.path:
            return self.document_id
        if self.page is not None:
            return f"{self.path}:{self.page}"
        return f"{self.path}#{self.heading}" if self.heading else self.path


class TraceStep(BaseModel):
    """One step of a conversational or agentic answer: a query rewrite, a tool call, an error.

    ``action`` is ``condense`` | ``search`` | ``fetch`` | ``error`` | ``stop`` | ``budget`` |
    ``answer``;
    ``query`` the query issued (or the standalone question), ``document_ids`` what it returned.
    """

    model_config = _FROZEN
    action: str
    query: str = ""
    document_ids: tuple[str, ...] = ()
    detail: str = ""


class Answer(BaseModel):
    """The generator's answer with the contexts it was given and the citations it made.
    ``trace`` lists the steps that led to it (empty for a single-shot answer)."""

    model_config = _FROZEN
    query: Query
    text: str
    citations: tuple[Citation, ...] = ()
    invalid_markers: tuple[int, ...] = ()
    contexts: tuple[Hit, ...] = ()
    timings: dict[str, float] = Field(default_factory=dict)
    model: str = ""
    trace: tuple[TraceStep, ...] = ()
    unsupported_markers: tuple[int, ...] = ()  # citations a judge found unsupported by their span

    @property
    def cited_ids(self) -> list[str]:
        return list(dict.fromkeys(c.document_id for c in self.citations))


def as_query(query: Query | str) -> Query:
    """Accept a plain string wherever a :class:`Query` is expected."""
    if isinstance(query, Query):
        return query
    if isinstance(query, str):
        return Query(text=query)
    raise TypeError(f"expected a Query or str, got {type(query).__name__}")


def as_documents(docs: Iterable[Document | dict[str, Any]]) -> list[Document]:
    """Coerce dicts (``{"id"|"_id", "text", "title", ...}``) to Documents."""
    out: list[Document] = []
    for d in docs:
        if isinstance(d, Document):
            out.append(d)
        else:
            d = dict(d)
            if "_id" in d and "id" not in d:
                d["id"] = d.pop("_id")
            meta = d.pop("metadata", {}) or {}
            if not isinstance(meta, dict):
                from rag.core.errors import ConfigError

                raise ConfigError(
                    f"document {d.get('id')!r}: metadata must be a JSON object, "
                    f"got {type(meta).__name__}"
                )
            extra = {k: d.pop(k) for k in list(d) if k not in ("id", "text", "title")}
            out.append(Document(**d, metadata={**extra, **meta}))
    return out


def unique_ids(docs: Sequence[Document]) -> None:
    """Raise if two documents share an id (nothing is silently overwritten)."""
    from rag.core.errors import ConfigError

    seen: set[str] = set()
    for d in docs:
        if d.id in seen:
            raise ConfigError(f"duplicate document id {d.id!r} in one batch; ids must be unique")
        seen.add(d.id)
