"""Qdrant multivector collection (``MultiVectorComparator.MAX_SIM``) through qdrant-client.

Each point holds a document's token matrix; Qdrant scores ``sum_i max_j <q_i, d_j>`` with the DOT
distance, i.e. exact MaxSim. ``location=":memory:"`` and ``path=`` run qdrant-client's embedded
local mode; ``url=`` a server or cluster (API key from the variable named by ``api_key_env``).
Point ids are the same UUIDv5 of the document id as :class:`retrievers.stores.QdrantStore`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np

from rag.core.errors import ConfigError
from retrievers.stores.qdrant import QdrantStore


class QdrantMultiVectorStore(QdrantStore):
    """Token matrices in a Qdrant multivector collection, searched by Qdrant's MaxSim.

    Connection, persistence and filters are :class:`~retrievers.stores.QdrantStore`'s.

    Args:
        collection: collection name.
        location: ``":memory:"`` for embedded in-memory mode (ignored when ``path`` or ``url``).
        path: folder for embedded persistent mode (persists by itself).
        url: server URL for a server or cluster.
        api_key_env: environment variable holding the server API key.
        on_disk: keep vectors on disk (server mode).
    """

    name: ClassVar[str] = "qdrant_multivector_store"
    upsert_batch: ClassVar[int] = 128

    def __init__(
        self,
        collection: str = "ragnodes_multivector",
        location: str = ":memory:",
        path: str | None = None,
        url: str | None = None,
        api_key_env: str | None = None,
        on_disk: bool = False,
    ) -> None:
        if not collection:
            raise ConfigError("collection must be a non-empty name")
        super().__init__(collection, location, path, url, api_key_env, "dot", on_disk)

    def _vectors_config(self, dim: int) -> Any:
        from qdrant_client import models

        return models.VectorParams(
            size=dim,
            distance=models.Distance.DOT,
            on_disk=self.on_disk,
            multivector_config=models.MultiVectorConfig(
                comparator=models.MultiVectorComparator.MAX_SIM
            ),
        )

    def add(  # type: ignore[override]
        self, ids: Sequence[str], vectors: Sequence[np.ndarray], payloads: Sequence[dict[str, Any]]
    ) -> None:
        """Insert or replace documents; ``vectors[i]`` is ``(L_i, D)``. A document without tokens
        is stored as one zero vector (Qdrant needs at least one), so it scores 0."""
        if len(vectors) != len(ids) or len(payloads) != len(ids):
            raise ConfigError(
                f"add() needs as many matrices and payloads as ids, got {len(ids)} "
                f"ids, {len(vectors)} matrices, {len(payloads)} payloads"
            )
        if not ids:
            return
        dim = int(np.asarray(vectors[0]).shape[1])
        self._ensure(dim)
        mats = []
        for v in vectors:
            m = np.asarray(v, dtype=np.float32)
            mats.append((m if len(m) else np.zeros((1, dim), np.float32)).tolist())
        self._upsert(ids, mats, payloads)

    def search(  # type: ignore[override]
        self, queries: Sequence[np.ndarray], k: int, filter: dict[str, Any] | None = None
    ) -> list[list[tuple[str, float]]]:
        """Top-``k`` ``(id, score)`` by MaxSim for each query matrix ``(Lq, D)``."""
        return self._query([np.asarray(q, np.float32).tolist() for q in queries], k, filter)
