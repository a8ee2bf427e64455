"""Qdrant's engine in-process (``qdrant-edge-py``): quantized and HNSW indexes without a server.

qdrant-client's local mode is a pure-Python exact scan that ignores quantization and HNSW settings;
``qdrant_edge.EdgeShard`` is the real Qdrant segment engine (HNSW graphs, binary/scalar
quantization with rescoring), so measurements taken here carry over to a Qdrant server. The same
settings map to a server collection through :class:`~retrievers.stores.qdrant.QdrantStore`
(``url=``) with :mod:`retrievers.stores.qdrant_settings`.

HNSW: Malkov & Yashunin, "Efficient and robust approximate nearest neighbor search using
Hierarchical Navigable Small World graphs", TPAMI 2018. Binary quantization with oversampled,
float-rescored shortlists: Qdrant's binary quantization; BEBR (Gan et al., KDD 2023).

>>> s = QdrantEdgeStore(quantization="binary", hnsw_m=16)   # doctest: +SKIP
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from rag.core.errors import ConfigError, DataError
from rag.core.nodes import Node
from retrievers.kernels.quantize import check_kind
from retrievers.stores.base import check_batch
from retrievers.stores.filters import translate, validate_filter
from retrievers.stores.qdrant import DISTANCES, point_id
from retrievers.stores.qdrant_settings import SCALAR_QUANTILE


def edge_quantization(kind: str | None) -> Any:
    """The same settings as :func:`client_quantization`, as ``qdrant_edge`` objects."""
    if check_kind(kind) is None:
        return None
    import qdrant_edge as qe

    if kind == "int8":
        return qe.ScalarQuantizationConfig(type=qe.ScalarType.Int8, quantile=SCALAR_QUANTILE)
    enc = qe.BinaryQuantizationEncoding
    return qe.BinaryQuantizationConfig(encoding=enc.OneBit if kind == "binary" else enc.TwoBits)


def to_edge(flt: dict[str, Any] | None, prefix: str = "metadata.") -> Any:
    """The shared filter syntax (:mod:`retrievers.stores.filters`) as a ``qdrant_edge.Filter``."""
    if not flt:
        return None
    import qdrant_edge as qe

    return translate(flt, prefix, qe, qe.RangeFloat)


class QdrantEdgeStore(Node):
    """A Qdrant shard run in-process by ``qdrant-edge-py``.

    Args:
        path: shard folder (persistent); ``None`` keeps it in a temporary folder that ``save``
            copies out.
        distance: ``dot`` (default), ``cosine`` or ``euclid``.
        quantization: ``None``, ``"binary"`` (1 bit), ``"2bit"`` or ``"int8"`` (scalar).
        rescore: re-score the quantized shortlist with the original vectors.
        oversampling: shortlist size as a multiple of ``k`` when rescoring.
        hnsw_m: HNSW edges per node; ``None`` searches exactly (plain index).
        hnsw_ef_construct: HNSW build beam width.
        hnsw_ef: HNSW search beam width (``None``: Qdrant's default).
        on_disk: keep the original vectors memory-mapped on disk.
    """

    name: ClassVar[str] = "qdrant_edge_store"
    kind: ClassVar[str] = "store"
    requires: ClassVar[tuple[str, ...]] = ("qdrant_edge",)
    ingest_batch: ClassVar[int] = 1024

    def __init__(
        self,
        path: str | None = None,
        distance: str = "dot",
        quantization: str | None = None,
        rescore: bool = True,
        oversampling: float = 4.0,
        hnsw_m: int | None = None,
        hnsw_ef_construct: int = 100,
        hnsw_ef: int | None = None,
        on_disk: bool = False,
    ) -> None:
        if distance not in DISTANCES:
            raise ConfigError(f"distance must be one of {DISTANCES}, got {distance!r}")
        check_kind(quantization)
        if not oversampling >= 1:
            raise ConfigError(f"oversampling must be >= 1, got {oversampling!r}")
        if hnsw_m is not None and hnsw_m < 2:
            raise ConfigError(f"hnsw_m must be >= 2 or None, got {hnsw_m}")
        self.path = path
        self.distance = distance
        self.quantization = quantization
        self.rescore = rescore
        self.oversampling = oversampling
        self.hnsw_m = hnsw_m
        self.hnsw_ef_construct = hnsw_ef_construct
        self.hnsw_ef = hnsw_ef
        self.on_disk = on_disk
        self._shard: Any = None
        self._dir: str | None = None
        self._tmp: str | None = None
        self._dirty = False

    # -- shard lifecycle ------------------------------------------------------------------------
    def _config(self, dim: int) -> Any:
        import qdrant_edge as qe

        dist = {"dot": qe.Distance.Dot, "cosine": qe.Distance.Cosine, "euclid": qe.Distance.Euclid}
        vectors = qe.EdgeVectorParams(
            size=dim,
            distance=dist[self.distance],
            on_disk=self.on_disk,
            quantization_config=edge_quantization(self.quantization),
        )
        # m=0 builds no graph (full scan); one indexing thread builds the graph in insertion
        # order, reproducibly. Quantized vectors only exist in optimized segments, so every
        # segment is optimized (indexing_threshold=1 KB) before it is searched.
        hnsw = qe.HnswIndexConfig(
            m=self.hnsw_m or 0,
            ef_construct=self.hnsw_ef_construct,
            full_scan_threshold=1,
            max_indexing_threads=1,
        )
        optimizers = qe.EdgeOptimizersConfig(indexing_threshold=1, default_segment_number=1)
        return qe.EdgeConfig(vectors=vectors, hnsw_config=hnsw, optimizers=optimizers)

    def _open(self, dim: int | None) -> Any:
        if self._shard is not None:
            return self._shard
        import qdrant_edge as qe

        if self._dir is None:
            if self.path is None:
                self._tmp = tempfile.mkdtemp(prefix="ragnodes-edge-")
            self._dir = self.path or self._tmp
        assert self._dir is not None
        has_data = Path(self._dir).is_dir() and any(Path(self._dir).iterdir())
        if has_data:
            self._shard = qe.EdgeShard.load(self._dir)
        elif dim is not None:
            self._shard = qe.EdgeShard.create(self._dir, self._config(dim))
        return self._shard

    def close(self) -> None:
        if self._shard is not None:
            self._shard.flush()
            self._shard.close()
            self._shard = None
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp, self._dir = None, None

    def __del__(self) -> None:  # temporary shards must not outlive the store
        try:
            self.close()
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass

    def optimize(self) -> None:
        """Build the HNSW graph / quantized segments now (search does it when needed)."""
        if self._shard is not None and self._dirty:
            self._shard.optimize()
            self._dirty = False

    # -- store API ------------------------------------------------------------------------------
    def count(self) -> int:
        import qdrant_edge as qe

        shard = self._open(None)
        return 0 if shard is None else int(shard.count(qe.CountRequest(exact=True)))

    def add(
        self, ids: Sequence[str], vectors: np.ndarray, payloads: Sequence[dict[str, Any]]
    ) -> None:
        import qdrant_edge as qe

        vectors = check_batch(ids, vectors, payloads, np.float32)
        if not len(ids):
            return
        shard = self._open(vectors.shape[1])
        # streamed: a batch's points are built from numpy rows (read by the binding without a
        # Python float per value) and dropped once upserted, so ingestion holds one batch of
        # Python objects, not the whole matrix as lists (issue #23: 100k x 384, see docs/scaling.md)
        b = self.ingest_batch
        for s in range(0, len(ids), b):
            points = [
                qe.Point(point_id(ids[j]), vectors[j], {**payloads[j], "doc_id": ids[j]})
                for j in range(s, min(s + b, len(ids)))
            ]
            shard.update(qe.UpdateOperation.upsert_points(points))
        self._dirty = True

    def delete(self, ids: Sequence[str]) -> None:
        import qdrant_edge as qe

        shard = self._open(None)
        if ids and shard is not None:
            shard.update(qe.UpdateOperation.delete_points([point_id(i) for i in ids]))
            self._dirty = True

    def search(
        self, queries: np.ndarray, k: int, filter: dict[str, Any] | None = None
    ) -> list[list[tuple[str, float]]]:
        import qdrant_edge as qe

        validate_filter(filter)
        shard = self._open(None)
        if shard is None or not len(queries):
            return [[] for _ in range(len(queries))]
        self.optimize()
        quant = None
        if self.quantization is not None:
            quant = qe.QuantizationSearchParams(
                rescore=self.rescore, oversampling=self.oversampling
            )
        params = qe.SearchParams(hnsw_ef=self.hnsw_ef, quantization=quant)
        flt = to_edge(filter)
        reqs = [
            qe.QueryRequest(
                limit=k,
                query=qe.Query.Nearest(q),
                with_payload=["doc_id"],
                params=params,
                filter=flt,
            )
            for q in np.asarray(queries, dtype=np.float32).tolist()
        ]
        out = []
        for res in shard.query_batch(qe.QueryBatchRequest(reqs)):
            hits = [(p.payload["doc_id"], float(p.score)) for p in res]
            hits.sort(key=lambda h: (-h[1], h[0]))
            out.append(hits)
        return out

    def save(self, path: Path) -> None:
        """A temporary shard is flushed and copied to ``path/qdrant_edge``; a ``path`` shard
        persists by itself."""
        if self.path is not None or self._shard is None:
            return
        self._shard.flush()
        target = Path(path) / "qdrant_edge"
        if target.exists():
            shutil.rmtree(target)
        assert self._dir is not None
        shutil.copytree(self._dir, target)

    def restore(self, path: Path) -> None:
        if self.path is not None:
            return
        src = Path(path) / "qdrant_edge"
        if not src.is_dir():
            raise DataError(f"incomplete Qdrant edge store at {path}: {src} is missing")
        self.close()
        self._tmp = tempfile.mkdtemp(prefix="ragnodes-edge-")
        shutil.copytree(src, self._tmp, dirs_exist_ok=True)
        self._dir = self._tmp
