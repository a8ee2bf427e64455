"""The base of retrievers made of other retrievers (hybrid, rerank fusion, think).

A composite holds child retrievers that read its one document store (the corpus is held and
saved once, :mod:`rag.index`), and answers a query by combining what its children return. The
base owns everything but the combination:

* the request is checked once, by :meth:`rag.nodes.BaseRetriever.check_request` at the outermost
  node; children are asked through their ``_retrieve`` (checked input), so a query inside a
  hybrid of a hybrid is still validated once;
* the candidate depth asked of each child is :func:`rag.nodes.candidate_depth` (``depth``, else
  the class's ``default_depth``, never fewer than ``k``);
* the composite uses the query's instruction when any of its parts does, applies a metadata
  filter only when every child can, and is lexical (``matching_only``) when every child is;
* indexing, deleting, ``load()`` and persistence go to every child (``_commit_state`` writes one
  state per child into the same commit).

A subclass stores its children and fills in one hook, :meth:`CompositeRetriever._fuse`: from the
checked queries, ``k`` and the depth, the combined ranking of each query (any ``query`` and
``stage``: the base sets them). Fusion functions are in :mod:`retrievers.fusion` (RRF, Cormack,
Clarke & Buettcher, SIGIR 2009; CombSUM, Fox & Shaw 1994).

>>> class Interleave(CompositeRetriever):                       # doctest: +SKIP
...     name = "interleave"
...     def __init__(self, retrievers): self.retrievers = list(retrievers)
...     def _fuse(self, queries, k, depth, filter):
...         per_child = self._ask(self.children, queries, depth, filter)
...         return [rrf([p[i] for p in per_child], k) for i in range(len(queries))]
"""

from __future__ import annotations

import time
from contextvars import ContextVar
from pathlib import Path
from typing import Any, ClassVar

from rag import tracing
from rag.index.io import write_index
from rag.nodes import BaseRetriever, candidate_depth
from rag.types import Document, Query, Ranking

_ASKED: ContextVar[list[int] | None] = ContextVar("ragnodes_asked", default=None)


class CompositeRetriever(BaseRetriever):
    """Children that share this node's documents, one hook (:meth:`_fuse`) that combines them.

    Subclasses keep their children in ``self.retrievers`` (or override :attr:`children`), and
    may name more parts (rerankers, a generator) in :meth:`parts` for ``load()`` and the
    instruction check. A config ``depth`` attribute, when present, sets the candidate depth;
    without one, the class attribute ``default_depth`` does.
    """

    retrievers: list[BaseRetriever]
    depth: int | None = None
    default_depth: ClassVar[int] = 100

    # -- the parts --------------------------------------------------------------------------------
    @property
    def children(self) -> list[BaseRetriever]:
        """The child retrievers: indexed with this node's documents, persisted with it."""
        return self.retrievers

    def parts(self) -> list[Any]:
        """Every node this one runs (default: the children): loaded by ``load()``, asked whether
        they use the instruction."""
        return list(self.children)

    @property
    def uses_instruction(self) -> bool:  # type: ignore[override]
        """Whether any part changes its result with ``Query.instruction``."""
        return any(getattr(p, "uses_instruction", False) for p in self.parts())

    @property
    def supports_filter(self) -> bool:  # type: ignore[override]
        """Whether every child applies a metadata filter."""
        return all(getattr(c, "supports_filter", True) for c in self.children)

    @property
    def matching_only(self) -> bool:
        """Only documents that share a term with the query (every child is lexical)."""
        return all(getattr(c, "matching_only", False) for c in self.children)

    def _load(self) -> None:
        for p in self.parts():
            p.load()

    # -- retrieval --------------------------------------------------------------------------------
    def candidate_depth(self, k: int) -> int:
        """Candidates asked of each child to return ``k`` (:func:`rag.nodes.candidate_depth`)."""
        return candidate_depth(k, self.depth, self.default_depth)

    def _retrieve(
        self, queries: list[Query], k: int, filter: dict[str, Any] | None
    ) -> list[Ranking]:
        if not queries or not self.documents:
            return [Ranking(query=q, stage=self.name) for q in queries]
        self.load()
        self._share_documents(self.documents)
        asked: list[int] = []  # when the children were done (the fuse span starts there)
        token = _ASKED.set(asked)
        try:
            fused = self._fuse(queries, k, self.candidate_depth(k), filter)
        finally:
            _ASKED.reset(token)
        tracing.stage_span_after("fuse", self, asked[-1] if asked else None, k, fused)
        return [
            r.model_copy(update={"query": q, "stage": self.name})
            for q, r in zip(queries, fused, strict=True)
        ]

    def _fuse(
        self, queries: list[Query], k: int, depth: int, filter: dict[str, Any] | None
    ) -> list[Ranking]:
        """Hook: the combined ranking of each query, at most ``k`` hits, sorted (score desc, id
        asc; :func:`retrievers.fusion.rrf` and ``Ranking.from_scored`` do both). ``depth`` is the
        candidate depth for the children (:meth:`_ask`)."""
        raise NotImplementedError

    @staticmethod
    def _ask(
        children: list[BaseRetriever],
        queries: list[Query],
        k: int,
        filter: dict[str, Any] | None,
    ) -> list[list[Ranking]]:
        """Each child's rankings of ``queries`` (``[child][query]``), on the checked request;
        one ``retrieve {child}`` span each (:mod:`rag.tracing`)."""
        out = []
        for c in children:
            with tracing.stage("retrieve", c, k, len(queries)) as sp:
                out.append(c._retrieve(queries, k, filter))
                tracing.candidates(sp, out[-1])
        if (asked := _ASKED.get()) is not None:
            asked.append(time.time_ns())
        return out

    # -- the one document store -------------------------------------------------------------------
    def _share_documents(self, documents: Any) -> None:
        """The children read this node's documents: the corpus is held (and saved) once."""
        self._docs = documents
        for c in self.children:
            c._share_documents(documents)

    def _add(self, docs: list[Document]) -> None:
        self._share_documents(self.documents)
        for c in self.children:
            c.load()
            c._add(docs)

    def _delete(self, ids: list[str]) -> None:
        self._share_documents(self.documents)
        for c in self.children:
            c._delete(ids)

    # -- persistence ------------------------------------------------------------------------------
    def _commit_state(self, commit: Any, part: str) -> dict[str, Any]:
        parts = [c._commit_state(commit, f"{part}{i}") for i, c in enumerate(self.children)]
        return {"children": parts}

    def _open_state(self, folder: Path, state: dict[str, Any]) -> None:
        self._share_documents(self.documents)
        for c, s in zip(self.children, state["children"], strict=True):
            c._open_state(folder, s)

    def _save_state(self, path: Path) -> None:
        for i, c in enumerate(self.children):
            write_index(c, path / f"child{i}")

    def _load_state(self, path: Path) -> None:
        """The layout before :mod:`rag.index`: one saved folder per child."""
        from rag.persist import load_retriever

        self.retrievers = [load_retriever(path / f"child{i}") for i in range(len(self.children))]


__all__ = ["CompositeRetriever"]
