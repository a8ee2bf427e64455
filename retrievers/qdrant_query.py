"""The requests :class:`~retrievers.qdrant_hybrid.QdrantHybridRetriever` sends: points in,
``QueryRequest`` out, documents back from payloads. Pure functions of vectors, so the exact calls
a server or cluster receives can be built and inspected without one.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from rag.core.errors import ConfigError
from rag.core.types import Document
from retrievers.qdrant_schema import sparse_vector
from retrievers.stores.qdrant import point_id

TIE_MARGIN = 10  # extra fused hits fetched so that ties at rank k are broken by id, as in rrf()


def fusion_query(fusion: str, rrf_k: int) -> Any:
    """``RrfQuery(Rrf(k=rrf_k + 1))`` (Qdrant ranks from 0, ``rrf()`` from 1) or DBSF."""
    from qdrant_client import models

    if fusion == "dbsf":
        return models.FusionQuery(fusion=models.Fusion.DBSF)
    if not hasattr(models, "RrfQuery"):  # parametrised RRF: Qdrant / qdrant-client 1.16
        raise ConfigError("fusion='rrf' with rrf_k needs qdrant-client >= 1.16")
    return models.RrfQuery(rrf=models.Rrf(k=rrf_k + 1))


def query_requests(
    dense: np.ndarray,
    sparse: Sequence[tuple[np.ndarray, np.ndarray]],
    fused: Any,
    k: int,
    depth: int,
    flt: Any = None,
    tokens: Sequence[np.ndarray] | None = None,
    fde: np.ndarray | None = None,
    rescore_depth: int | None = None,
) -> list[Any]:
    """One ``QueryRequest`` per query: prefetch dense ``(B, D)`` + sparse (+ FDE ``(B, F)``), each
    with the filter, fused; with ``tokens`` (``(Lq, H)`` each) MaxSim re-scores the fused top
    ``rescore_depth``."""
    from qdrant_client import models

    reqs = []
    for i in range(len(dense)):
        pre = [models.Prefetch(query=dense[i].tolist(), using="dense", limit=depth, filter=flt)]
        sidx, sval = sparse[i]
        if len(sidx):  # a query of stopwords only has no lexical candidates
            pre.append(
                models.Prefetch(
                    query=sparse_vector(sidx, sval), using="bm25", limit=depth, filter=flt
                )
            )
        if fde is not None:
            pre.append(models.Prefetch(query=fde[i].tolist(), using="fde", limit=depth, filter=flt))
        common = {"limit": k + TIE_MARGIN, "filter": flt, "with_payload": True}
        if tokens is None:
            reqs.append(models.QueryRequest(prefetch=pre, query=fused, **common))
            continue
        n = max(rescore_depth if rescore_depth is not None else depth, k)
        reqs.append(
            models.QueryRequest(
                prefetch=models.Prefetch(prefetch=pre, query=fused, limit=n, filter=flt),
                query=np.asarray(tokens[i], np.float32).tolist(),
                using="colbert",
                **common,
            )
        )
    return reqs


def document_points(
    docs: Sequence[Document],
    dense: np.ndarray,
    sparse: Sequence[tuple[np.ndarray, np.ndarray]],
    lengths: Sequence[int],
    tokens: Sequence[np.ndarray] | None = None,
    fde: np.ndarray | None = None,
) -> list[Any]:
    """``PointStruct`` per document: payload = the document + its BM25 length; named vectors.
    A document without tokens gets one zero token vector (Qdrant needs one), scoring 0."""
    from qdrant_client import models

    points = []
    for j, d in enumerate(docs):
        vec: dict[str, Any] = {"dense": dense[j].tolist(), "bm25": sparse_vector(*sparse[j])}
        if tokens is not None:
            m = np.asarray(tokens[j], np.float32)
            vec["colbert"] = (m if len(m) else np.zeros((1, m.shape[1]), np.float32)).tolist()
        if fde is not None:
            vec["fde"] = fde[j].tolist()
        payload = {
            "doc_id": d.id,
            "title": d.title,
            "text": d.text,
            "metadata": d.metadata,
            "bm25_len": int(lengths[j]),
        }
        points.append(models.PointStruct(id=point_id(d.id), vector=vec, payload=payload))
    return points


def payload_document(payload: dict[str, Any]) -> Document:
    """The document a point's payload holds."""
    return Document(
        id=payload["doc_id"],
        title=payload.get("title", ""),
        text=payload.get("text", ""),
        metadata=payload.get("metadata") or {},
    )
