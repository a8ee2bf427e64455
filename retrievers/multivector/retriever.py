"""Multi-vector (late interaction) retrieval node with three backends.

* ``exact``: brute-force MaxSim over every document in the :class:`TokenStore` (the reference).
* ``muvera``: MUVERA FDEs of the documents in any single-vector store (``ExactStore`` by default,
  ``QdrantStore`` works too) give ``candidates`` documents per query, which exact MaxSim then
  re-scores from the token store (``rerank=False`` returns the FDE scores themselves).
* ``qdrant``: a Qdrant multivector collection scored by Qdrant's own MaxSim comparator.

>>> r = MultiVectorRetriever(backend="muvera")   # packaged MiniLM token vectors
>>> r = r.index([{"id": "d1", "text": "late interaction"}])      # doctest: +SKIP
>>> r.retrieve("interaction").ids                               # doctest: +SKIP
['d1']
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from rag.core.errors import ConfigError
from rag.core.nodes import BaseRetriever, Node
from rag.core.types import Document, Query
from retrievers.multivector.encoder import TokenEncoder
from retrievers.multivector.muvera import MuveraFDE
from retrievers.multivector.qdrant_store import QdrantMultiVectorStore
from retrievers.multivector.token_store import TokenStore
from retrievers.stores.exact import ExactStore
from retrievers.stores.filters import predicate

BACKENDS = ("exact", "muvera", "qdrant")


class MultiVectorRetriever(BaseRetriever):
    """Late-interaction retrieval over token vectors.

    Args:
        encoder: a :class:`TokenEncoder` (default: packaged MiniLM token vectors).
        backend: ``exact`` | ``muvera`` | ``qdrant`` (see the module docstring).
        candidates: FDE candidates re-scored by exact MaxSim (``muvera``).
        rerank: re-score the FDE candidates with exact MaxSim (``muvera``); ``False`` returns
            FDE inner products.
        fde: the :class:`MuveraFDE` parameters (``muvera``).
        fde_store: single-vector store for the FDEs (``muvera``; default ``ExactStore``).
        token_store: :class:`TokenStore` for exact MaxSim (``exact``, ``muvera``).
        qdrant: :class:`QdrantMultiVectorStore` (``qdrant``).
        index_batch: documents encoded per step while indexing.
    """

    name: ClassVar[str] = "multivector"

    def __init__(
        self,
        encoder: Any = None,
        backend: str = "muvera",
        candidates: int = 100,
        rerank: bool = True,
        fde: Any = None,
        fde_store: Any = None,
        token_store: Any = None,
        qdrant: Any = None,
        index_batch: int = 512,
    ) -> None:
        if backend not in BACKENDS:
            raise ConfigError(f"backend must be one of {BACKENDS}, got {backend!r}")
        if isinstance(candidates, bool) or not isinstance(candidates, int) or candidates < 1:
            raise ConfigError(f"candidates must be an int >= 1, got {candidates!r}")
        if index_batch < 1:
            raise ConfigError(f"index_batch must be >= 1, got {index_batch}")
        self.encoder = encoder if encoder is not None else TokenEncoder()
        self.backend = backend
        self.candidates = candidates
        self.rerank = rerank
        self.fde = fde if fde is not None else MuveraFDE()
        self.fde_store = fde_store if fde_store is not None else ExactStore()
        self.token_store = token_store if token_store is not None else TokenStore()
        self.qdrant = qdrant if qdrant is not None else QdrantMultiVectorStore()
        self.index_batch = index_batch
        for nm, v, cls in (
            ("encoder", self.encoder, TokenEncoder),
            ("fde", self.fde, MuveraFDE),
            ("token_store", self.token_store, TokenStore),
            ("qdrant", self.qdrant, QdrantMultiVectorStore),
        ):
            if not isinstance(v, cls):
                raise ConfigError(f"{nm} must be a {cls.__name__}, got {type(v).__name__}")
        if not isinstance(self.fde_store, Node) or not hasattr(self.fde_store, "search"):
            raise ConfigError(
                f"fde_store must be a vector store node, got {type(fde_store).__name__}"
            )

    def _load(self) -> None:
        self.encoder.load()

    @property
    def index_bytes(self) -> dict[str, int]:
        """Bytes held per structure: token vectors, FDEs (float32)."""
        out = {}
        if self.backend in ("exact", "muvera"):
            out["tokens"] = self.token_store.nbytes
        if self.backend == "muvera" and self.token_store.dim:
            out["fde"] = 4 * self.fde.output_dim(self.token_store.dim) * len(self.documents)
        return out

    # -- hooks ----------------------------------------------------------------------------------
    def _add(self, docs: list[Document]) -> None:
        for s in range(0, len(docs), self.index_batch):
            chunk = docs[s : s + self.index_batch]
            ids = [d.id for d in chunk]
            payloads = [{"metadata": d.metadata} for d in chunk]
            vecs = self.encoder.encode_documents([d.full_text for d in chunk])
            if self.backend == "qdrant":
                self.qdrant.add(ids, vecs, payloads)
                continue
            self.token_store.add(ids, vecs, payloads)
            if self.backend == "muvera":
                self.fde_store.add(ids, self.fde.encode_documents(vecs), payloads)

    def _delete(self, ids: list[str]) -> None:
        if self.backend == "qdrant":
            self.qdrant.delete(ids)
            return
        self.token_store.delete(ids)
        if self.backend == "muvera":
            self.fde_store.delete(ids)

    def _search(
        self, queries: list[Query], k: int, filter: dict | None
    ) -> list[list[tuple[str, float]]]:
        qv = self.encoder.encode_queries([q.text for q in queries])
        if self.backend == "qdrant":
            return self.qdrant.search(qv, k, filter)
        if self.backend == "exact":
            allowed = None
            if filter:
                match = predicate(filter)
                allowed = [i for i, d in self.documents.items() if match(d.metadata)]
            return self.token_store.search(qv, k, allowed)
        n = max(k, self.candidates) if self.rerank else k
        cands = self.fde_store.search(self.fde.encode_queries(qv), n, filter)
        if not self.rerank:
            return cands
        out = []
        for q, res in zip(qv, cands, strict=True):
            ids = [i for i, _ in res]
            out.append(list(zip(ids, self.token_store.score(q, ids).tolist(), strict=True)))
        return out

    def query_vectors(self, queries: list[str]) -> list[np.ndarray]:
        """The encoder's token matrices for ``queries`` (what ``_search`` scores with)."""
        return self.encoder.encode_queries(queries)

    # -- persistence ----------------------------------------------------------------------------
    def _save_state(self, path: Path) -> None:
        if self.backend == "qdrant":
            self.qdrant.save(path / "qdrant")
            return
        self.token_store.save(path / "tokens")
        if self.backend == "muvera":
            self.fde_store.save(path / "fde")

    def _load_state(self, path: Path) -> None:
        if self.backend == "qdrant":
            self.qdrant.restore(path / "qdrant")
            return
        self.token_store.restore(path / "tokens")
        if self.backend == "muvera":
            self.fde_store.restore(path / "fde")
