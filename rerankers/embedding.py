"""Embedding reranking: rescore candidates with a (second, usually stronger) sentence encoder.

score(q, d) = cos(E(q), E(d)) with ``E`` a :class:`rag.core.encoders.TransformerEncoder`; queries
use the encoder's query prefix and documents its document prefix (``title + " " + text``).
The unit vectors of the last ``cache_size`` document texts are kept in the library's one
document-vector cache (:class:`rag.core.embed_cache.EmbeddingCache`, memory tier), so reranking
overlapping candidate pools for many queries encodes each document once; an encoder with an
on-disk ``cache`` folder also reads the documents it has embedded before back from disk.

>>> rr = EmbeddingReranker(TransformerEncoder("minilm"))
>>> rr.rerank(bm25_ranking, k=10)                              # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import numpy as np

from rag.core.embed_cache import memory_cache
from rag.core.encoders import TransformerEncoder
from rag.core.errors import ConfigError
from rag.core.nodes import BaseReranker
from rag.core.types import Document, Query
from rerankers._common import doc_text


class EmbeddingReranker(BaseReranker):
    """Cosine similarity under ``encoder`` (default: all-MiniLM-L6-v2, packaged).

    Args:
        encoder: the :class:`~rag.core.encoders.TransformerEncoder` that rescores.
        cache_size: document vectors kept between calls (0 disables the cache).
    """

    name: ClassVar[str] = "embedding"

    def __init__(self, encoder: TransformerEncoder | None = None, cache_size: int = 65536) -> None:
        if isinstance(cache_size, bool) or not isinstance(cache_size, int) or cache_size < 0:
            raise ConfigError(f"cache_size must be an int >= 0, got {cache_size!r}")
        self.encoder = encoder if encoder is not None else TransformerEncoder("minilm")
        self.cache_size = cache_size
        self._cache = memory_cache(cache_size)  # text -> unit vector, the last cache_size texts

    def _load(self) -> None:
        self.encoder.load()

    def document_vectors(self, docs: Sequence[Document]) -> np.ndarray:
        """Unit vectors ``(N, H)`` of ``docs``, from the cache where possible."""
        if not docs:
            return np.zeros((0, self.encoder.dim), dtype=np.float32)

        def embed(texts: list[str]) -> np.ndarray:
            return _unit(self.encoder.encode(texts, kind="document"))

        return self._cache.encode([doc_text(d) for d in docs], embed)

    def cache_vectors(self, docs: Sequence[Document], vectors: np.ndarray) -> None:
        """Seed the cache with ``vectors`` computed elsewhere by this same encoder (e.g. the
        document vectors of a dense first-stage index), so reranking does not encode them again.
        Vectors from another model would silently change the scores: that is the caller's call."""
        vectors = np.asarray(vectors, dtype=np.float32)
        if vectors.shape != (len(docs), self.encoder.dim):
            raise ConfigError(
                f"vectors must be ({len(docs)}, {self.encoder.dim}), got {vectors.shape}"
            )
        self._cache.put([doc_text(d) for d in docs], _unit(vectors))

    def _score(self, query: Query, docs: list[Document]) -> Sequence[float]:
        q = _unit(self.encoder.encode([query.text], kind="query"))  # (1, H)
        return (self.document_vectors(docs) @ q[0]).tolist()


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)
