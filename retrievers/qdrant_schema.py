"""The collection layout of :class:`~retrievers.qdrant_hybrid.QdrantHybridRetriever`.

Named vectors ``dense`` (DOT), ``colbert`` (multivector, MAX_SIM, no HNSW graph: it only
re-scores), ``fde`` (DOT); sparse vector ``bm25`` with ``Modifier.IDF``. Cluster settings
(``shard_number``, ``replication_factor``, ``write_consistency_factor``, ``on_disk``,
quantization, HNSW ``m``) go into ``create_collection`` unchanged. BM25 corpus statistics
(document count, token count, the span of average lengths the stored weights used) live in the
collection's ``metadata`` under ``ragnodes``, so any process can add documents consistently.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from rag.core.errors import ConfigError

META_KEY = "ragnodes"
FIELD_TYPES = ("keyword", "integer", "float", "bool")


def sparse_vector(indices: np.ndarray, values: np.ndarray) -> Any:
    from qdrant_client import models

    return models.SparseVector(indices=indices.tolist(), values=values.tolist())


def payload_indexes(filter_fields: dict[str, str] | None) -> dict[str, str]:
    """``{payload key: schema type}`` for the declared metadata filter fields."""
    out = {}
    for field, kind in (filter_fields or {}).items():
        if kind not in FIELD_TYPES:
            raise ConfigError(
                f"filter_fields[{field!r}] must be one of {FIELD_TYPES}, got {kind!r}"
            )
        out[f"metadata.{field}"] = kind
    return out


def collection_config(
    r: Any, dim: int, tok_dim: int | None = None, fde_dim: int | None = None
) -> dict[str, Any]:
    """``create_collection`` keyword arguments for retriever ``r``'s settings."""
    from qdrant_client import models

    from retrievers.stores.qdrant_settings import client_hnsw, client_quantization

    dense = models.VectorParams(
        size=dim,
        distance=models.Distance.DOT,
        on_disk=r.on_disk,
        quantization_config=client_quantization(r.quantization),
        hnsw_config=client_hnsw(r.hnsw_m, 100),
    )
    vectors = {"dense": dense}
    if tok_dim is not None:
        vectors["colbert"] = models.VectorParams(
            size=tok_dim,
            distance=models.Distance.DOT,
            on_disk=r.on_disk,
            multivector_config=models.MultiVectorConfig(
                comparator=models.MultiVectorComparator.MAX_SIM
            ),
            hnsw_config=models.HnswConfigDiff(m=0),
        )
    if fde_dim is not None:
        vectors["fde"] = models.VectorParams(
            size=fde_dim, distance=models.Distance.DOT, on_disk=r.on_disk
        )
    cfg: dict[str, Any] = {
        "vectors_config": vectors,
        "sparse_vectors_config": {
            "bm25": models.SparseVectorParams(
                modifier=models.Modifier.IDF,
                index=models.SparseIndexParams(on_disk=r.on_disk),
            )
        },
    }
    for key in ("shard_number", "replication_factor", "write_consistency_factor"):
        if getattr(r, key) is not None:
            cfg[key] = getattr(r, key)
    return cfg


def copy_collection(client: Any, collection: str, path: str) -> None:
    """Copy ``collection`` (config, metadata, every point) into a local-mode folder ``path``."""
    from qdrant_client import QdrantClient, models

    target = QdrantClient(path=path)
    try:
        if target.collection_exists(collection):
            target.delete_collection(collection)
        if not client.collection_exists(collection):
            return
        info = client.get_collection(collection).config
        target.create_collection(
            collection,
            vectors_config=info.params.vectors,
            sparse_vectors_config=info.params.sparse_vectors,
            metadata=info.metadata,
        )
        offset = None
        while True:
            pts, offset = client.scroll(
                collection, limit=256, offset=offset, with_vectors=True, with_payload=True
            )
            target.upsert(
                collection,
                points=[
                    models.PointStruct(id=p.id, vector=p.vector, payload=p.payload) for p in pts
                ],
            )
            if offset is None:
                break
    finally:
        target.close()
