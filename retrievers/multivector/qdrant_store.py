"""Qdrant multivector collection (``MultiVectorComparator.MAX_SIM``) through qdrant-client.

Each point holds a document's token matrix; Qdrant scores ``sum_i max_j <q_i, d_j>`` with the DOT
distance, i.e. exact MaxSim. ``location=":memory:"`` and ``path=`` run qdrant-client's embedded
local mode; ``url=`` a server or cluster (API key from the variable named by ``api_key_env``).
Point ids are the same UUIDv5 of the document id as :class:`retrievers.stores.QdrantStore`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from rag.errors import ConfigError
from rag.extras import require
from rag.nodes import Node
from retrievers.stores.filters import to_qdrant, validate_filter
from retrievers.stores.qdrant import point_id


class QdrantMultiVectorStore(Node):
    """Token matrices in a Qdrant multivector collection, searched by Qdrant's MaxSim.

    Args:
        collection: collection name.
        location: ``":memory:"`` for embedded in-memory mode (ignored when ``path`` or ``url``).
        path: folder for embedded persistent mode (persists by itself).
        url: server URL for a server or cluster.
        api_key_env: environment variable holding the server API key.
        on_disk: keep vectors on disk (server mode).
    """

    name: ClassVar[str] = "qdrant_multivector_store"
    kind: ClassVar[str] = "store"

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
        self.collection = collection
        self.location = location
        self.path = path
        self.url = url
        self.api_key_env = api_key_env
        self.on_disk = on_disk
        self._client: Any = None

    def _connect(self, path: str | None = None) -> Any:
        qc = require("qdrant_client", feature="the Qdrant multivector store")
        if self.url and path is None:
            key = os.environ.get(self.api_key_env) if self.api_key_env else None
            return qc.QdrantClient(url=self.url, api_key=key)
        p = path or self.path
        return qc.QdrantClient(path=p) if p else qc.QdrantClient(location=self.location)

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = self._connect()
        return self._client

    def _ensure(self, client: Any, dim: int) -> None:
        from qdrant_client import models

        if client.collection_exists(self.collection):
            return
        client.create_collection(
            self.collection,
            vectors_config=models.VectorParams(
                size=dim,
                distance=models.Distance.DOT,
                on_disk=self.on_disk,
                multivector_config=models.MultiVectorConfig(
                    comparator=models.MultiVectorComparator.MAX_SIM
                ),
            ),
        )

    def count(self) -> int:
        if not self.client.collection_exists(self.collection):
            return 0
        return int(self.client.count(self.collection, exact=True).count)

    def add(
        self, ids: Sequence[str], vectors: Sequence[np.ndarray], payloads: Sequence[dict[str, Any]]
    ) -> None:
        """Insert or replace documents; ``vectors[i]`` is ``(L_i, D)``. A document without tokens
        is stored as one zero vector (Qdrant needs at least one), so it scores 0."""
        from qdrant_client import models

        if len(vectors) != len(ids) or len(payloads) != len(ids):
            raise ConfigError(
                f"add() needs as many matrices and payloads as ids, got {len(ids)} "
                f"ids, {len(vectors)} matrices, {len(payloads)} payloads"
            )
        if not ids:
            return
        dim = int(np.asarray(vectors[0]).shape[1])
        self._ensure(self.client, dim)
        points = []
        for i, v, p in zip(ids, vectors, payloads, strict=True):
            m = np.asarray(v, dtype=np.float32)
            m = m if len(m) else np.zeros((1, dim), np.float32)
            points.append(
                models.PointStruct(id=point_id(i), vector=m.tolist(), payload={**p, "doc_id": i})
            )
        for s in range(0, len(points), 128):
            self.client.upsert(self.collection, points=points[s : s + 128], wait=True)

    def delete(self, ids: Sequence[str]) -> None:
        from qdrant_client import models

        if ids and self.client.collection_exists(self.collection):
            self.client.delete(
                self.collection,
                points_selector=models.PointIdsList(points=[point_id(i) for i in ids]),
            )

    def search(
        self, queries: Sequence[np.ndarray], k: int, filter: dict[str, Any] | None = None
    ) -> list[list[tuple[str, float]]]:
        """Top-``k`` ``(id, score)`` by MaxSim for each query matrix ``(Lq, D)``."""
        from qdrant_client import models

        validate_filter(filter)
        if not len(queries) or not self.client.collection_exists(self.collection):
            return [[] for _ in queries]
        flt = to_qdrant(filter)
        reqs = [
            models.QueryRequest(
                query=np.asarray(q, np.float32).tolist(),
                limit=k,
                filter=flt,
                with_payload=["doc_id"],
            )
            for q in queries
        ]
        res = self.client.query_batch_points(self.collection, requests=reqs)
        return [[(p.payload["doc_id"], float(p.score)) for p in r.points] for r in res]

    def save(self, path: Path) -> None:
        """An in-memory collection is copied to ``path/qdrant``; ``path``/``url`` modes persist
        by themselves."""
        if self.url or self.path:
            return
        from qdrant_client import models

        target = self._connect(str(Path(path) / "qdrant"))
        try:
            if target.collection_exists(self.collection):
                target.delete_collection(self.collection)
            if not self.client.collection_exists(self.collection):
                return
            info = self.client.get_collection(self.collection)
            target.create_collection(self.collection, vectors_config=info.config.params.vectors)
            offset = None
            while True:
                pts, offset = self.client.scroll(
                    self.collection, limit=256, offset=offset, with_vectors=True, with_payload=True
                )
                target.upsert(
                    self.collection,
                    points=[
                        models.PointStruct(id=p.id, vector=p.vector, payload=p.payload) for p in pts
                    ],
                )
                if offset is None:
                    break
        finally:
            target.close()

    def restore(self, path: Path) -> None:
        if self.url or self.path:
            return
        if self._client is not None:
            self._client.close()
        self._client = self._connect(str(Path(path) / "qdrant"))

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
