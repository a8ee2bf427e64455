"""Hybrid retrieval: several retrievers fused by RRF (default, k=60) or normalised scores.

Each child retrieves ``depth`` candidates (default ``max(k, 100)``) before fusion, so a document
ranked low by one retriever still gets its share from the other.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from rag.errors import ConfigError
from rag.nodes import BaseRetriever, check_k, check_query
from rag.types import Document, Query, Ranking
from retrievers.fusion import NORMS, rrf, score_fusion

METHODS = ("rrf", "score")


class HybridRetriever(BaseRetriever):
    """Fuse child retrievers (e.g. BM25 + dense).

    Args:
        retrievers: the children; each is indexed with the same documents.
        weights: one per child (default all 1).
        method: ``rrf`` or ``score`` (CombSUM of normalised scores).
        rrf_k: the RRF constant.
        norm: score normalisation for ``method="score"``: minmax | zscore | none.
        depth: candidates per child (default ``max(k, 100)``).
    """

    name: ClassVar[str] = "hybrid"

    def __init__(
        self,
        retrievers: list[BaseRetriever],
        weights: list[float] | None = None,
        method: str = "rrf",
        rrf_k: int = 60,
        norm: str = "minmax",
        depth: int | None = None,
    ) -> None:
        if not retrievers:
            raise ConfigError("HybridRetriever needs at least one retriever")
        if method not in METHODS:
            raise ConfigError(f"method must be one of {METHODS}, got {method!r}")
        if norm not in NORMS:
            raise ConfigError(f"norm must be one of {NORMS}, got {norm!r}")
        if weights is not None and len(weights) != len(retrievers):
            raise ConfigError(f"got {len(weights)} weights for {len(retrievers)} retrievers")
        if depth is not None:
            check_k(depth)
        self.retrievers = list(retrievers)
        self.weights = weights
        self.method = method
        self.rrf_k = rrf_k
        self.norm = norm
        self.depth = depth

    @property
    def matching_only(self) -> bool:
        """Only documents that share a term with the query (every child is lexical)."""
        return all(getattr(r, "matching_only", False) for r in self.retrievers)

    @property
    def uses_instruction(self) -> bool:  # type: ignore[override]
        return any(getattr(r, "uses_instruction", False) for r in self.retrievers)

    def _load(self) -> None:
        for r in self.retrievers:
            r.load()

    def _share_documents(self, documents: Any) -> None:
        """The children read the hybrid's documents: the corpus is held (and saved) once."""
        self._docs = documents
        for r in self.retrievers:
            r._share_documents(documents)

    def _add(self, docs: list[Document]) -> None:
        self._share_documents(self.documents)
        for r in self.retrievers:
            r.load()
            r._add(docs)

    def _delete(self, ids: list[str]) -> None:
        self._share_documents(self.documents)
        for r in self.retrievers:
            r._delete(ids)

    def _commit_state(self, commit: Any, part: str) -> dict[str, Any]:
        parts = [r._commit_state(commit, f"{part}{i}") for i, r in enumerate(self.retrievers)]
        return {"children": parts}

    def _open_state(self, folder: Path, state: dict[str, Any]) -> None:
        self._share_documents(self.documents)
        for r, s in zip(self.retrievers, state["children"], strict=True):
            r._open_state(folder, s)

    def retrieve_batch(self, queries, k: int = 10, filter: dict | None = None) -> list[Ranking]:  # type: ignore[no-untyped-def]
        check_k(k)
        qs = [check_query(q) for q in queries]
        if not qs or not self.documents:
            return [Ranking(query=q, stage=self.name) for q in qs]
        self._share_documents(self.documents)
        depth = self.depth if self.depth is not None else max(k, 100)
        per_child = [r.retrieve_batch(qs, k=depth, filter=filter) for r in self.retrievers]
        out = []
        for i, q in enumerate(qs):
            rs = [p[i] for p in per_child]
            fused = (
                rrf(rs, k, self.weights, self.rrf_k)
                if self.method == "rrf"
                else score_fusion(rs, k, self.weights, self.norm)
            )
            out.append(fused.model_copy(update={"query": q, "stage": self.name}))
        return out

    def _search(
        self, queries: list[Query], k: int, filter: dict | None
    ) -> list[list[tuple[str, float]]]:
        raise NotImplementedError  # retrieve_batch is overridden

    def _save_state(self, path: Path) -> None:
        for i, r in enumerate(self.retrievers):
            r.save(path / f"child{i}")

    def _load_state(self, path: Path) -> None:
        from rag.persist import load_retriever

        self.retrievers = [load_retriever(path / f"child{i}") for i in range(len(self.retrievers))]
