"""Document-level retrieval over chunks: retrieve chunks, rank their parent documents.

A long document split into chunks (:class:`rag.ingest.Chunker`) is indexed as many small
passages, which is what dense encoders need (a 3,600-word report truncated to 256 tokens is
invisible past its first page). Users and evaluations often want *documents* back, though: a
report per hit, judged per report. :class:`ParentRetriever` wraps any chunk retriever, takes its
top ``depth`` chunks and groups them by parent (``metadata["parent_id"]``, or LlamaIndex's
``ref_doc_id``) with :func:`rag.ingest.parents.group_by_parent`:

* ``max``: the best chunk's score (MaxP, Dai & Callan, SIGIR 2019), the default and the best
  on scifact-reports (``bench/bench_chunking.py``);
* ``sum``: the sum of the parent's chunk scores (SumP, same paper);
* ``rrf``: reciprocal-rank fusion of the parent's chunks (Cormack et al., SIGIR 2009).

A parent hit carries its best chunk's text and metadata and ``metadata["chunks"]``, the ids of
its retrieved chunks, best first. A document that is not a chunk is its own parent, so the node
also works over a mixed or unchunked corpus (it then returns what the child returns).

>>> from retrievers import BM25Retriever
>>> r = ParentRetriever(BM25Retriever(), how="max", depth=100)       # doctest: +SKIP
>>> r.index(chunks).retrieve("which report?", k=10).ids            # report ids  # doctest: +SKIP

In a config: ``{"type": "parents", "retriever": {"type": "hybrid", ...}, "how": "max"}``; from
the CLI, ``rag search IDX "q" --group max`` groups the hits of any index the same way.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

from rag.errors import ConfigError
from rag.ingest.parents import GROUPINGS, group_by_parent
from rag.nodes import BaseRetriever, check_k, check_query
from rag.types import Document, Query, Ranking


class ParentRetriever(BaseRetriever):
    """Rank parent documents by their retrieved chunks (see the module docstring).

    Args:
        retriever: the chunk-level retriever (any retriever node); it holds the chunks.
        how: ``max`` | ``sum`` | ``rrf``, how chunk scores make a parent score.
        depth: chunks retrieved per query before grouping (default ``max(10 * k, 100)``).
        rrf_k: the RRF constant for ``how="rrf"``.
    """

    name: ClassVar[str] = "parents"

    def __init__(
        self, retriever: BaseRetriever, how: str = "max", depth: int | None = None, rrf_k: int = 60
    ) -> None:
        if how not in GROUPINGS:
            raise ConfigError(f"how must be one of {GROUPINGS}, got {how!r}")
        bad = isinstance(depth, bool) or not isinstance(depth, int) or depth < 1
        if depth is not None and bad:
            raise ConfigError(f"depth must be an integer >= 1 (chunks grouped), got {depth!r}")
        self.retriever = retriever
        self.how, self.depth, self.rrf_k = how, depth, rrf_k

    @property
    def uses_instruction(self) -> bool:  # type: ignore[override]
        return bool(getattr(self.retriever, "uses_instruction", False))

    @property
    def matching_only(self) -> bool:
        return bool(getattr(self.retriever, "matching_only", False))

    def _load(self) -> None:
        self.retriever.load()

    # the chunks live in the child: one document table, so an indexed retriever can be wrapped
    @property
    def documents(self) -> dict[str, Document]:
        return self.retriever.documents

    def _share_documents(self, documents: Any) -> None:
        self.retriever._share_documents(documents)

    def _add(self, docs: list[Document]) -> None:
        self.retriever.load()
        self.retriever._add(docs)

    def _delete(self, ids: list[str]) -> None:
        self.retriever._delete(ids)

    def _commit_state(self, commit: Any, part: str) -> dict[str, Any]:
        return {"child": self.retriever._commit_state(commit, f"{part}0")}

    def _open_state(self, folder: Path, state: dict[str, Any]) -> None:
        self.retriever._open_state(folder, state["child"])

    def _save_state(self, path: Path) -> None:
        self.retriever.save(path / "child0")

    def _load_state(self, path: Path) -> None:
        from rag.persist import load_retriever

        self.retriever = load_retriever(path / "child0")

    def retrieve_batch(
        self, queries: Sequence[Query | str], k: int = 10, filter: dict | None = None
    ) -> list[Ranking]:
        check_k(k)
        qs = [check_query(q) for q in queries]
        if not qs or not self.documents:
            return [Ranking(query=q, stage=self.name) for q in qs]
        depth = self.depth if self.depth is not None else max(10 * k, 100)
        chunks = self.retriever.retrieve_batch(qs, k=depth, filter=filter)
        return [group_by_parent(r, self.how, k, self.rrf_k) for r in chunks]

    def _search(
        self, queries: list[Query], k: int, filter: dict | None
    ) -> list[list[tuple[str, float]]]:
        raise NotImplementedError  # retrieve_batch groups the child's ranking
