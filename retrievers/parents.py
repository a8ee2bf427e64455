"""Document-level retrieval over chunks: retrieve chunks, rank their parent documents.

A long document split into chunks (:class:`rag.ingest.Chunker`) is indexed as many small
passages, which is what dense encoders need (a 3,600-word report truncated to 256 tokens is
invisible past its first page). Users and evaluations often want *documents* back, though: a
report per hit, judged per report. :class:`ParentRetriever` wraps any chunk retriever, takes its
top ``depth`` chunks and groups them by parent (``metadata["parent_id"]``, or LlamaIndex's
``ref_doc_id``) with :func:`group_by_parent`:

* ``max``: the best chunk's score (MaxP, Dai & Callan, SIGIR 2019), the default and the best
  on scifact-reports (``bench/bench_chunking.py``);
* ``sum``: the sum of the parent's chunk scores (SumP, same paper);
* ``rrf``: reciprocal-rank fusion of the parent's chunks (Cormack et al., SIGIR 2009):
  ``s(D) = sum_{c in D} 1 / (k + rank(c))``, ``k = 60``, through the one RRF
  (:func:`retrievers.fusion.rrf_sums`).

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

from pathlib import Path
from typing import Any, ClassVar

from rag.core.errors import ConfigError
from rag.core.nodes import BaseRetriever, candidate_depth
from rag.core.types import Document, Query, Ranking
from retrievers.composite import CompositeRetriever
from retrievers.fusion import rrf_sums

GROUPINGS = ("max", "sum", "rrf")


def parent_of(doc: Document) -> str:
    """A chunk's parent id: ``parent_id`` (rag.ingest), else LlamaIndex's ``ref_doc_id``; a
    document that is not a chunk is its own parent."""
    m = doc.metadata
    return str(m.get("parent_id", m.get("ref_doc_id", doc.id)))


def group_by_parent(
    ranking: Ranking, how: str = "max", k: int | None = None, rrf_k: int = 60
) -> Ranking:
    """A document-level ranking from a chunk ranking (see the module docstring). Each parent hit
    carries its best chunk's text, the doc title, and ``metadata["chunks"]`` (its chunk ids,
    best first)."""
    if how not in GROUPINGS:
        raise ConfigError(f"grouping must be one of {GROUPINGS}, got {how!r}")
    scores: dict[str, float] = {}
    chunks: dict[str, list[Document]] = {}
    for h in ranking.hits:
        p = parent_of(h.document)
        if p not in chunks:
            scores[p] = h.score
            chunks[p] = []
        elif how == "max":
            scores[p] = max(scores[p], h.score)
        else:
            scores[p] += h.score
        chunks[p].append(h.document)
    if how == "rrf":
        scores = rrf_sums([[parent_of(h.document) for h in ranking.hits]], rrf_k=rrf_k)
    pairs = []
    for p, s in scores.items():
        best = chunks[p][0]
        meta = {k2: v for k2, v in best.metadata.items() if k2 not in ("chunk", "start", "end")}
        meta["chunks"] = [c.id for c in chunks[p]]
        title = str(best.metadata.get("doc_title", best.title))
        pairs.append((Document(id=p, text=best.text, title=title, metadata=meta), s))
    return Ranking.from_scored(ranking.query, pairs, k=k, stage=f"{ranking.stage}|group:{how}")


class ParentRetriever(CompositeRetriever):
    """Rank parent documents by their retrieved chunks (see the module docstring).

    Args:
        retriever: the chunk-level retriever (any retriever node); it may already hold chunks,
            which this node then shares (no re-indexing).
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
        if retriever.documents:  # wrap an indexed retriever: its chunks are this node's
            self._docs = retriever.documents

    @property
    def children(self) -> list[BaseRetriever]:
        return [self.retriever]

    def candidate_depth(self, k: int) -> int:
        return candidate_depth(k, self.depth, default=max(10 * k, 100))

    def _fuse(
        self, queries: list[Query], k: int, depth: int, filter: dict[str, Any] | None
    ) -> list[Ranking]:
        (chunks,) = self._ask(self.children, queries, depth, filter)
        return [group_by_parent(r, self.how, k, self.rrf_k) for r in chunks]

    def _load_state(self, path: Path) -> None:
        from rag.index.persist import load_retriever

        self.retriever = load_retriever(path / "child0")
