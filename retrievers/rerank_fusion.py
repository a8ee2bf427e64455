"""Fusion of first-stage retrievers with rerankers that score their pooled candidates.

Each child retrieves ``depth`` candidates; their union is the pool; each reranker re-scores the
whole pool (e.g. MiniLM late interaction, Khattab & Zaharia, "ColBERT", SIGIR 2020); then every
child ranking and every reranked pool is fused, by weighted reciprocal-rank fusion (Cormack et
al., SIGIR 2009) or by CombSUM of normalised scores (Fox & Shaw 1994; the convex combination that
Bruch, Gai & Ingber, "An Analysis of Fusion Functions for Hybrid Retrieval", ACM TOIS 2023, found
to beat RRF when its weight is tuned). So ``RerankFusionRetriever([bm25, dense],
[LateInteractionReranker()])`` is three-way fusion of BM25, dense and late interaction, where late
interaction only scores the ``<= 2 * depth`` pooled candidates instead of the whole corpus.

A feedback child (``bm25_rm3``, ``dense_prf``) whose inner retriever equals another child shares
that child's index: ``[BM25Retriever(), RM3Retriever()]`` builds one BM25 index and fuses the
original and the expanded run (interpolating both runs, as Li et al., TOIS 2023, do for PRF); the
shared index is saved once.

A reranker with index-time state (late interaction's token store,
:meth:`rerankers.late_interaction.LateInteractionReranker.index_documents`) builds it when
this node indexes, and the store is committed and reopened with the index through the rerankers'
one hook pair (``_commit_state`` / ``_open_state``, :class:`rag.nodes.BaseReranker`), so a query
reads its candidates' token vectors instead of encoding them (seconds per query on a CPU
otherwise).

>>> from retrievers import BM25Retriever
>>> r = RerankFusionRetriever([BM25Retriever()], [], weights=[1.0])
>>> r.index([{"id": "a", "text": "cats purr"}, {"id": "b", "text": "dogs"}]).retrieve("cat").ids
['a']
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from rag.errors import ConfigError
from rag.index.io import write_index
from rag.nodes import BaseReranker, BaseRetriever
from rag.types import Document, Query, Ranking
from retrievers.fusion import rrf
from retrievers.hybrid import HybridRetriever

_INNER = ("bm25", "dense")  # attributes holding a feedback node's inner retriever


def _forget(retriever: Any, ids: list[str]) -> None:
    """Drop what a feedback node cached about ``ids`` (RM3's term counts)."""
    cache = getattr(retriever, "_tf", None)
    if isinstance(cache, dict):
        for i in ids:
            cache.pop(i, None)


class RerankFusionRetriever(HybridRetriever):
    """Fuse child retrievers and rerankers of their pooled candidates.

    Args:
        retrievers: first-stage children (each indexed with the same documents).
        rerankers: rerankers that score the pool of the children's candidates.
        weights: one per child, then one per reranker (default all 1).
        method / rrf_k / norm: as :class:`HybridRetriever`.
        depth: candidates per child, at least ``k`` (default ``max(k, 100)``: rerankers score the
            pool, so their cost grows with it; the plain ``hybrid`` fuses 500 by default).
    """

    name: ClassVar[str] = "rerank_fusion"
    default_depth: ClassVar[int] = 100

    def __init__(
        self,
        retrievers: list[BaseRetriever],
        rerankers: list[Any] | None = None,
        weights: list[float] | None = None,
        method: str = "rrf",
        rrf_k: int = 60,
        norm: str = "minmax",
        depth: int | None = None,
    ) -> None:
        super().__init__(retrievers, None, method, rrf_k, norm, depth)
        self.rerankers = list(rerankers or [])
        for r in self.rerankers:
            if not hasattr(r, "rerank_batch"):
                raise ConfigError(f"rerankers must be reranker nodes, got {type(r).__name__}")
        n = len(self.retrievers) + len(self.rerankers)
        if weights is not None and len(weights) != n:
            raise ConfigError(
                f"got {len(weights)} weights for {len(self.retrievers)} retrievers and "
                f"{len(self.rerankers)} rerankers ({n} needed)"
            )
        self.weights = weights
        self._link()

    def _link(self) -> None:
        """Point each feedback child's inner retriever at an equal sibling (shared index)."""
        self._followers: set[int] = set()
        for i, c in enumerate(self.retrievers):
            for attr in _INNER:
                inner = getattr(c, attr, None)
                if not isinstance(inner, BaseRetriever):
                    continue
                for o in self.retrievers:
                    if o is c:
                        continue
                    if o is inner or (type(o) is type(inner) and o == inner):
                        setattr(c, attr, o)
                        self._followers.add(i)
                        break

    def _add(self, docs: list[Document]) -> None:
        # the children read this node's one document store (rag.index); a follower's only
        # index is its sibling's, so it just forgets what it cached about these documents
        self._share_documents(self.documents)
        for i, r in enumerate(self.retrievers):
            if i in self._followers:
                _forget(r, [d.id for d in docs])
            else:
                r.load()
                r._add(docs)
        for rr in self.rerankers:  # index-time state: late interaction's token store
            if isinstance(rr, BaseReranker):
                rr.index_documents(docs)

    def _delete(self, ids: list[str]) -> None:
        self._share_documents(self.documents)
        for i, r in enumerate(self.retrievers):
            if i in self._followers:
                _forget(r, ids)
            else:
                r._delete(ids)
        for rr in self.rerankers:
            if isinstance(rr, BaseReranker):
                rr.delete_documents(ids)

    def _commit_state(self, commit: Any, part: str) -> dict[str, Any]:
        parts = [
            {"follower": True} if i in self._followers else r._commit_state(commit, f"{part}{i}")
            for i, r in enumerate(self.retrievers)
        ]
        stores = [  # index-time state (token segments), through the rerankers' one hook
            rr._commit_state(commit, f"{part}rr{j}") if isinstance(rr, BaseReranker) else None
            for j, rr in enumerate(self.rerankers)
        ]
        return {"children": parts, "rerankers": stores}

    def _open_state(self, folder: Path, state: dict[str, Any]) -> None:
        self._share_documents(self.documents)
        for r, s in zip(self.retrievers, state["children"], strict=True):
            if not s.get("follower"):
                r._open_state(folder, s)
        self._link()  # followers read their sibling's (now opened) index again
        saved = state.get("rerankers") or []
        for j, rr in enumerate(self.rerankers):
            if isinstance(rr, BaseReranker):
                got = saved[j] if j < len(saved) else None
                rr._open_state(folder, got if isinstance(got, dict) else None)

    def _save_state(self, path: Path) -> None:
        for i, r in enumerate(self.retrievers):
            if i not in self._followers:  # a follower's only state is its sibling's index
                write_index(r, path / f"child{i}")

    def _load_state(self, path: Path) -> None:
        from rag.persist import load_retriever

        self.retrievers = [
            r if i in self._followers else load_retriever(path / f"child{i}")
            for i, r in enumerate(self.retrievers)
        ]
        self._link()
        for i in self._followers:
            self.retrievers[i]._docs = dict(self.documents)

    def parts(self) -> list[Any]:
        """The children and the rerankers (loaded together; the query, instruction included,
        reaches both)."""
        return [*self.retrievers, *self.rerankers]

    def _fuse(
        self, queries: list[Query], k: int, depth: int, filter: dict[str, Any] | None
    ) -> list[Ranking]:
        per_child = self._ask(self.retrievers, queries, depth, filter)
        pools = [rrf([p[i] for p in per_child]) for i in range(len(queries))]
        per_rr = [rr.rerank_batch(pools) for rr in self.rerankers]
        return [
            self._combine([p[i] for p in per_child] + [p[i] for p in per_rr], k)
            for i in range(len(queries))
        ]
