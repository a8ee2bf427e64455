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

Such a ranking is also lazy: it holds its top ids and their scores as two lists plus the mapping
its documents come from, reads the documents on their first use, and builds its :class:`Hit`
objects on the first read of ``hits``. A hybrid's children hand hundreds of candidates each to
fusion, which reads ids and scores only, so a document store that decodes a document per read
(:mod:`rag.index.docstore`) decodes the ``k`` fused hits, not every candidate. The public calls
(``BaseRetriever.retrieve_batch``, ``Pipeline.run_stages``) read the documents of what they
return before returning (:func:`fetch_documents`), so a later write to the index does not change a
ranking a caller holds. ``ids``, ``scores``, ``len``, :meth:`Ranking.top` and
:meth:`Ranking.arrays` never read documents or build hits (an evaluation reads ids and scores
only; fusion reads arrays); :meth:`Ranking.documents` reads documents without building hits;
equality, copies, pickling, ``repr`` and every serialisation (``model_dump``, the server's
JSON) build them first, so a lazy ranking is indistinguishable from an eager one.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from itertools import chain
from operator import itemgetter
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_serializer
from pydantic_core.core_schema import SerializerFunctionWrapHandler

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


_ID_POOL: list[str] = []  # random ids drawn 512 at a time (one urandom call)
os.register_at_fork(after_in_child=_ID_POOL.clear)  # a forked child draws its own


def _new_id() -> str:
    """A random query id: 12 hex digits (48 random bits, what ``uuid4().hex[:12]`` gave, at a
    fraction of its cost: a batch of 300 strings makes 300 queries). ``list.pop`` is atomic,
    so threads never share an id."""
    try:
        return _ID_POOL.pop()
    except IndexError:
        raw = os.urandom(6 * 512).hex()
        _ID_POOL.extend(raw[i : i + 12] for i in range(12, len(raw), 12))
        return raw[:12]


class ScoredIds(NamedTuple):
    """One query's candidates as arrays, what a retriever's ``_search`` may return instead of
    ``(id, score)`` pairs: ``ids`` ``(n,)`` unique, ``scores`` ``(n,)`` float, any order.
    :meth:`Ranking.from_arrays` turns them into a ranking, reading documents only for its top k.

    >>> ScoredIds(["a", "b"], np.array([0.5, 2.0], dtype=np.float32)).scores.dtype
    dtype('float32')
    """

    ids: Sequence[str]
    scores: np.ndarray


class ScoredBatch(Sequence[ScoredIds]):
    """A batch's candidates as flat arrays, what a kernel returns: query ``i``'s are
    ``ids[ends[i - 1]:ends[i]]`` with their ``scores`` (each query's unique). A sequence of one
    :class:`ScoredIds` per query (built on access), which :meth:`Ranking.batch_from_arrays` reads
    without splitting and re-joining the arrays.

    >>> b = ScoredBatch(["a", "b", "c"], np.array([2.0, 1.0, 3.0]), [2, 2, 3])
    >>> len(b), list(b[0].ids), list(b[1].ids), list(b[2].ids)
    (3, ['a', 'b'], [], ['c'])
    """

    __slots__ = ("ids", "scores", "ends")

    def __init__(self, ids: list[str], scores: np.ndarray, ends: list[int]) -> None:
        self.ids, self.scores, self.ends = ids, scores, ends

    def __len__(self) -> int:
        return len(self.ends)

    def __getitem__(self, i: int) -> ScoredIds:  # type: ignore[override]
        if not isinstance(i, int):
            raise TypeError("a ScoredBatch is indexed by query position")
        if i < 0:
            i += len(self.ends)
        if not 0 <= i < len(self.ends):
            raise IndexError(i)
        start = self.ends[i - 1] if i else 0
        return ScoredIds(self.ids[start : self.ends[i]], self.scores[start : self.ends[i]])


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
    id: str = Field(default_factory=lambda: _new_id())
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

    # A ranking made by ``from_arrays`` (every retriever's and fusion's output) is lazy: it
    # holds its top documents and scores as two lists and builds its Hit objects on the first
    # read of ``hits`` (module docstring). Kept out of the docstring: that is the API schema's.

    model_config = _FROZEN
    query: Query
    hits: tuple[Hit, ...] = ()
    stage: str = ""
    provenance: dict[str, Any] = Field(default_factory=dict)

    @property
    def ids(self) -> list[str]:
        lazy = _lazy_of(self)
        if lazy is not None:
            return list(lazy.ids)
        return [h.document.id for h in self.hits]

    @property
    def scores(self) -> list[float]:
        lazy = _lazy_of(self)
        if lazy is not None:
            return list(lazy.scores)
        return [h.score for h in self.hits]

    def __len__(self) -> int:
        lazy = _lazy_of(self)
        return len(lazy.ids) if lazy is not None else len(self.hits)

    def top(self, k: int | None) -> Ranking:
        """The first ``k`` hits (all of them when ``k`` is None)."""
        if k is None or k >= len(self):
            return self
        d = self.__dict__
        lazy = _lazy_of(self)
        if lazy is not None:
            return _lazy_ranking(d["query"], lazy.head(k), d["stage"], d["provenance"])
        return trusted(
            Ranking,
            query=self.query,
            hits=self.hits[:k],
            stage=self.stage,
            provenance=self.provenance,
        )

    def arrays(self) -> ScoredIds:
        """The hits as ``(ids, scores float64)`` arrays, best first (fusion's input)."""
        lazy = _lazy_of(self)
        if lazy is not None:
            return ScoredIds(list(lazy.ids), np.array(lazy.scores, dtype=np.float64))
        hits = self.hits
        scores = np.fromiter((h.score for h in hits), np.float64, len(hits))
        return ScoredIds([h.document.id for h in hits], scores)

    def documents(self) -> list[Document]:
        """The hits' documents, best first (no :class:`Hit` objects built)."""
        lazy = _lazy_of(self)
        if lazy is not None:
            return list(lazy.docs)
        return [h.document for h in self.hits]

    # -- the lazy hits: built on first read, and before anything pydantic does with the model --
    if not TYPE_CHECKING:  # keep attribute checks static for type checkers (as pydantic does)

        def __getattr__(self, name: str) -> Any:
            if name == "hits" and _lazy_of(self) is not None:
                return _materialise(self)
            return super().__getattr__(name)

    @model_serializer(mode="wrap")
    def _serialise(self, handler: SerializerFunctionWrapHandler):  # type: ignore[no-untyped-def]  # noqa: ANN202 (no return type: the schema stays the fields')
        _materialise(self)
        return handler(self)

    def model_copy(self, *, update: Mapping[str, Any] | None = None, deep: bool = False) -> Any:
        lazy = _lazy_of(self)
        if lazy is not None and not deep and (update is None or "hits" not in update):
            d = {**self.__dict__, **(update or {})}
            return _lazy_ranking(d["query"], lazy, d["stage"], d["provenance"])
        _materialise(self)
        return super().model_copy(update=update, deep=deep)

    def __copy__(self) -> Any:
        _materialise(self)
        return super().__copy__()

    def __deepcopy__(self, memo: dict[int, Any] | None = None) -> Any:
        _materialise(self)
        return super().__deepcopy__(memo)

    def __getstate__(self) -> dict[Any, Any]:
        _materialise(self)
        return super().__getstate__()

    def __eq__(self, other: object) -> bool:
        _materialise(self)
        if isinstance(other, Ranking):
            _materialise(other)
        return super().__eq__(other)

    def __iter__(self) -> Any:
        _materialise(self)
        return super().__iter__()

    def __repr_args__(self) -> Any:
        _materialise(self)
        return super().__repr_args__()

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
        top = _Lazy([], [], documents)
        if n > 32 and n > 4 * want:  # first the top ``want`` and every tie with the last one
            keep = np.flatnonzero(s >= np.partition(s, n - want)[n - want]).tolist()
            top = _top(ids, s, keep, documents, want)
        if len(top.ids) < want:  # no cut, or ids missing from ``documents`` among the top
            top = _top(ids, s, None, documents, want)
        return _lazy_ranking(query, top, stage, {})

    @classmethod
    def batch_from_arrays(
        cls,
        queries: Sequence[Query],
        results: Sequence[ScoredIds],
        documents: Mapping[str, Document],
        k: int | None = None,
        stage: str = "",
    ) -> list[Ranking]:
        """:meth:`from_arrays` for each ``(query, result)``, the common case done once for the
        whole batch: every list at most ``k`` long and strictly descending (a retriever's
        top k without ties) and every id in ``documents``: one concatenation, one membership
        pass, one conversion of all scores, documents read on first use. Lists with ties or more
        than ``k`` entries, and a batch with an id missing from ``documents``, go through
        :meth:`from_arrays` (same result either way)."""
        if isinstance(results, ScoredBatch):  # flat already: nothing to join
            flat, s, end_list = results.ids, np.asarray(results.scores), results.ends
            lens = np.diff(end_list, prepend=0).tolist()
        else:
            lens = [len(r.ids) for r in results]
        total = sum(lens)
        if total < 2 or (k is not None and max(lens) > k):
            return [
                cls.from_arrays(q, r.ids, r.scores, documents, k, stage)
                for q, r in zip(queries, results)
            ]
        if not isinstance(results, ScoredBatch):
            s = np.concatenate([np.asarray(r.scores) for r in results])
            flat = list(chain.from_iterable(r.ids for r in results))
            end_list = np.cumsum(lens).tolist()
        ends = np.asarray(end_list, dtype=np.int64)
        # a dict holds its documents in memory: one C-level lookup of all ids reads them and
        # checks them at once; any other mapping (a document store decoding per read) is
        # checked now and read on first use
        docs: Any = None
        try:
            if type(documents) is dict:
                docs = itemgetter(*flat)(documents)
            elif not all(map(documents.__contains__, flat)):
                raise KeyError
        except KeyError:  # an id deleted since: from_arrays drops it
            return [
                cls.from_arrays(q, r.ids, r.scores, documents, k, stage)
                for q, r in zip(queries, results)
            ]
        tie = np.ones(len(s), dtype=bool)
        tie[:-1] = s[1:] >= s[:-1]  # not strictly descending after position i ...
        tie[ends - 1] = False  # ... unless i ends its list
        before = np.zeros(len(s) + 1, dtype=np.int64)  # tie marks before each position
        np.cumsum(tie, out=before[1:])
        has_tie = before[ends] - before[ends - np.asarray(lens)]
        vals = s.tolist()
        out = []
        start = 0
        for i, (q, end, n, bad) in enumerate(zip(queries, end_list, lens, has_tie.tolist())):
            if bad and n:
                r = results[i]
                out.append(cls.from_arrays(q, r.ids, r.scores, documents, k, stage))
            else:
                top = _Lazy(flat[start:end], vals[start:end], documents,
                            None if docs is None else docs[start:end])
                out.append(_lazy_ranking(q, top, stage, {}))
            start = end
        return out

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


class _Lazy:
    """A lazy ranking's top: ids and their scores (Python floats), best first, and ``source``,
    the mapping their documents are read from on first use (:attr:`docs`). An id gone from
    ``source`` by then (deleted since) is dropped with its score, as :meth:`Ranking.from_arrays`
    drops it; ids, scores and documents are swapped as one tuple, so a concurrent reader never
    sees them disagree."""

    __slots__ = ("_top", "source")

    def __init__(
        self,
        ids: list[str],
        scores: list[float],
        source: Mapping[str, Document] | None = None,
        docs: Sequence[Document] | None = None,
    ) -> None:
        self._top: tuple[list[str], list[float], Sequence[Document] | None] = (ids, scores, docs)
        self.source = source

    @property
    def ids(self) -> list[str]:
        return self._top[0]

    @property
    def scores(self) -> list[float]:
        return self._top[1]

    @property
    def unread(self) -> bool:
        """No document read yet (they come from ``source`` on first use)."""
        return self._top[2] is None

    @property
    def docs(self) -> Sequence[Document]:
        ids, scores, docs = self._top
        if docs is None:
            src = self.source
            assert src is not None, "a lazy ranking without documents has a source"
            try:
                docs = list(itemgetter(*ids)(src)) if len(ids) > 1 else [src[i] for i in ids]
            except KeyError:
                kept = [(i, s, src[i]) for i, s in zip(ids, scores) if i in src]
                ids, scores, docs = [x[0] for x in kept], [x[1] for x in kept], [x[2] for x in kept]
            self._top = (ids, scores, docs)
        return docs

    def head(self, k: int) -> _Lazy:
        ids, scores, docs = self._top
        return _Lazy(ids[:k], scores[:k], self.source, None if docs is None else docs[:k])


def fetch_documents(rankings: Iterable[Ranking]) -> None:
    """Read the documents of lazy rankings now (the public calls do, before returning: a
    ranking then holds its documents, whatever the index does next)."""
    for r in rankings:
        lazy = _lazy_of(r)
        if lazy is not None:
            lazy.docs  # noqa: B018 (reads and keeps them)


def shared_source(rankings: Sequence[Ranking]) -> Mapping[str, Document] | None:
    """The one mapping every ranking of ``rankings`` reads its documents from, if they are all
    lazy over the same one with no document read yet (a composite's children share their
    parent's store): fusion then reads the fused top's documents there, and no candidate's
    document is read for nothing. Rankings that hold their documents (a public call's output)
    are fused with those documents, whatever the store holds by now."""
    lazies = [_lazy_of(r) for r in rankings]
    if any(lz is None or not lz.unread for lz in lazies):
        return None
    sources = {id(lz.source): lz.source for lz in lazies if lz is not None}
    return next(iter(sources.values())) if len(sources) == 1 else None


_LAZY = "_lazy"  # the key of a lazy ranking's top in ``__pydantic_private__``
_RANKING_FIELDS = {"query", "hits", "stage", "provenance"}


def _lazy_of(r: Ranking) -> _Lazy | None:
    private = r.__pydantic_private__
    return private.get(_LAZY) if private else None


def _lazy_ranking(query: Query, top: _Lazy, stage: str, provenance: dict[str, Any]) -> Ranking:
    """A :class:`Ranking` holding ``top`` until its hits are read (no validation: values the
    library made). ``hits`` is absent from ``__dict__`` until then (:func:`_materialise`)."""
    m = _new(Ranking)
    _set(m, "__dict__", {"query": query, "stage": stage, "provenance": provenance})
    _set(m, "__pydantic_fields_set__", set(_RANKING_FIELDS))
    _set(m, "__pydantic_extra__", None)
    _set(m, "__pydantic_private__", {_LAZY: top})
    return m


def _materialise(r: Ranking) -> tuple[Hit, ...]:
    """Build a lazy ranking's hits and make it an ordinary one (its ``__dict__`` swapped whole,
    fields in declaration order, so a concurrent reader never sees a half-built ranking)."""
    lazy = _lazy_of(r)
    if lazy is None:
        hits: tuple[Hit, ...] = r.__dict__["hits"]
        return hits
    new, set_ = _new, _set
    built = []
    docs = lazy.docs  # first: reading them may drop ids deleted since, with their scores
    for doc, score in zip(docs, lazy.scores):
        h = new(Hit)  # trusted(Hit, ...) inlined: this loop builds every hit of a batch
        set_(h, "__dict__", {"document": doc, "score": score})
        set_(h, "__pydantic_fields_set__", {"document", "score"})
        set_(h, "__pydantic_extra__", None)
        set_(h, "__pydantic_private__", None)
        built.append(h)
    hits = tuple(built)
    d = r.__dict__
    _set(
        r,
        "__dict__",
        {"query": d["query"], "hits": hits, "stage": d["stage"], "provenance": d["provenance"]},
    )
    _set(r, "__pydantic_private__", None)
    return hits


def _top(
    ids: Sequence[str],
    s: np.ndarray,
    keep: list[int] | None,
    documents: Mapping[str, Document],
    want: int,
) -> _Lazy:
    """The first ``want`` of ``ids`` (those at ``keep``, else all) by (score descending, id
    ascending) whose id is in ``documents``, with their scores (documents read on first use)."""
    if keep is not None:
        ids, s = [ids[i] for i in keep], s[keep]
    scores = s.tolist()
    order: Sequence[int] = range(len(ids))
    if any(scores[i] <= scores[i + 1] for i in range(len(ids) - 1)):  # not strictly descending
        order = sorted(order, key=lambda i: (-scores[i], ids[i]))
    has = documents.__contains__
    kept: list[str] = []
    vals: list[float] = []
    for i in order:
        if has(ids[i]):
            kept.append(ids[i])
            vals.append(scores[i])
            if len(kept) == want:
                break
    return _Lazy(kept, vals, documents)


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
    if type(query) is str:  # what Query(text=query) makes, without a validation pass:
        # trusted() inlined (measured 0.1-1.4 us a query cheaper; every text of a batch comes here)
        # with the fields set that Query(text=query) records
        q = _new(Query)
        _set(q, "__dict__", {"text": query, "id": _new_id(), "instruction": None})
        _set(q, "__pydantic_fields_set__", {"text"})
        _set(q, "__pydantic_extra__", None)
        _set(q, "__pydantic_private__", None)
        return q
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
