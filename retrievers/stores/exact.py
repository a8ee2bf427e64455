"""Exact (brute-force) inner-product search over a numpy matrix, saved as ``.npy`` + JSON.

Search is one matrix product per query batch and ``argpartition`` for the top k, so it is exact
and the reference every approximate index is measured against.

Compressed indexes: ``quantization="binary"|"2bit"|"int8"`` scores against packed codes
(:mod:`retrievers.kernels.quantize`) and ``dims=m`` against the first ``m`` dimensions renormalised
(Matryoshka truncation: Kusupati et al., "Matryoshka Representation Learning", NeurIPS 2022). With
``rescore=True`` the ``ceil(k * oversampling)`` best rows of the compressed index are re-scored with
the full float vectors (BEBR's recall-then-rerank; Qdrant's ``rescore``/``oversampling``), which
can stay on disk (``mmap``) while only the codes need RAM.

>>> s = ExactStore(quantization="binary", oversampling=4.0)   # 32x smaller index, float rescoring
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from rag.errors import ConfigError, DataError
from rag.index.files import write_array
from rag.nodes import Node
from rag.persist import atomic_write_text
from retrievers.kernels import binary as kbin
from retrievers.kernels import dense as kdense
from retrievers.kernels import quantize as qz
from retrievers.stores.base import check_batch
from retrievers.stores.filters import predicate, validate_filter


def topk_rows(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices and values of the ``k`` largest entries per row of ``scores`` ``(B, N)``,
    sorted descending, ties broken by lower column index (also at the k-th place)."""
    n = scores.shape[1]
    k = min(k, n)
    if k < n:
        kth = -np.partition(-scores, k - 1, axis=1)[:, k - 1 : k]  # k-th largest per row
        rows = []
        for row, t in zip(scores, kth[:, 0]):
            above = np.flatnonzero(row > t)
            tied = np.flatnonzero(row == t)[: k - len(above)]
            rows.append(np.concatenate([above, tied]))
        part = np.stack(rows) if rows else np.zeros((0, k), dtype=np.int64)
    else:
        part = np.broadcast_to(np.arange(n), scores.shape).copy()
    vals = np.take_along_axis(scores, part, axis=1)
    order = np.lexsort((part, -vals), axis=1)
    idx = np.take_along_axis(part, order, axis=1)
    return idx, np.take_along_axis(vals, order, axis=1)


class ExactStore(Node):
    """In-memory exact store, optionally searched through a compressed index.

    Args:
        dtype: ``float32`` (default) or ``float16`` (halves memory) for the full vectors.
        quantization: ``None`` (float search), ``"binary"``, ``"2bit"`` or ``"int8"``.
        rescore: re-score the compressed shortlist with the full vectors (exact order within it).
        oversampling: shortlist size as a multiple of ``k`` when rescoring (>= 1).
        dims: search the first ``dims`` dimensions, renormalised (Matryoshka truncation).
    """

    name: ClassVar[str] = "exact_store"
    kind: ClassVar[str] = "store"
    # binary: Hamming shortlist size as a multiple of the re-scored rows (retrievers.kernels.binary)
    hamming_factor: ClassVar[float] = 16.0
    threads: ClassVar[int] = 1  # workers of the exact float scan (retrievers.kernels.dense)

    def __init__(
        self,
        dtype: str = "float32",
        quantization: str | None = None,
        rescore: bool = True,
        oversampling: float = 4.0,
        dims: int | None = None,
    ) -> None:
        if dtype not in ("float32", "float16"):
            raise ConfigError(f"dtype must be 'float32' or 'float16', got {dtype!r}")
        qz.check_kind(quantization)
        if not oversampling >= 1:
            raise ConfigError(f"oversampling must be >= 1, got {oversampling!r}")
        if dims is not None and (isinstance(dims, bool) or not isinstance(dims, int) or dims < 1):
            raise ConfigError(f"dims must be an int >= 1 or None, got {dims!r}")
        self.dtype = dtype
        self.quantization = quantization
        self.rescore = rescore
        self.oversampling = oversampling
        self.dims = dims
        self._ids: list[str] = []
        self._row: dict[str, int] = {}
        self._vecs = np.zeros((0, 0), dtype=dtype)
        self._payloads: list[dict[str, Any]] = []
        self._codebook: qz.Codebook | None = None
        self._codes: np.ndarray | None = None  # compressed index rows, aligned with self._ids
        # binary codes (and the uint64 words the popcount scan reads)
        self._words: tuple[np.ndarray, np.ndarray] | None = None

    @property
    def compressed(self) -> bool:
        return self.quantization is not None or self.dims is not None

    def count(self) -> int:
        return len(self._ids)

    def bytes_per_vector(self) -> dict[str, int]:
        """Bytes per document: ``index`` (what search scans) and ``full`` (float vector, read
        only for the rescored shortlist when compressed)."""
        d = self._vecs.shape[1]
        full = d * np.dtype(self.dtype).itemsize
        if not self.compressed:
            return {"index": full, "full": full}
        m = min(self.dims or d, d)
        return {"index": qz.bytes_per_vector(self.quantization, m, 4), "full": full}

    # -- the compressed index -------------------------------------------------------------------
    def _truncate(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float32)
        if self.dims is None or self.dims >= x.shape[1]:
            return x
        t = x[:, : self.dims]
        return t / np.maximum(np.linalg.norm(t, axis=1, keepdims=True), 1e-12)

    def _encode(self, x: np.ndarray) -> np.ndarray:
        t = self._truncate(x)
        if self.quantization is None:
            return t.astype(self.dtype)
        if self._codebook is None:
            self._codebook = qz.fit(self.quantization, t)
        return qz.encode(self._codebook, t)

    def _index(self) -> np.ndarray:
        """The compressed rows, built (and the quantizer fitted) on first use."""
        if self._codes is None or len(self._codes) != len(self._ids):
            self._codebook = None
            self._codes = self._encode(self._vecs)
        return self._codes

    def _approx_scores(self, q: np.ndarray) -> np.ndarray:
        codes, tq = self._index(), self._truncate(q)
        if self.quantization is None:
            return tq @ np.asarray(codes, dtype=np.float32).T
        assert self._codebook is not None  # set by _index()
        return qz.approx_scores(self._codebook, codes, tq)

    def _rescored(self, q: np.ndarray, scores: np.ndarray, k: int) -> tuple[np.ndarray, ...]:
        """Top ``k`` of the shortlist ``ceil(k * oversampling)`` re-scored with full vectors;
        the shortlist is re-sorted by row so that ties break by row, as in exact search."""
        n = min(scores.shape[1], max(k, int(np.ceil(k * self.oversampling))))
        short, approx = topk_rows(scores, n)
        order = np.argsort(short, axis=1, kind="stable")
        short = np.take_along_axis(short, order, axis=1)
        keep = np.isfinite(np.take_along_axis(approx, order, axis=1))
        full = np.asarray(self._vecs[short.ravel()], dtype=np.float32).reshape(*short.shape, -1)
        exact = np.einsum("bd,bnd->bn", q, full)
        exact[~keep] = -np.inf
        j, vals = topk_rows(exact, k)
        return np.take_along_axis(short, j, axis=1), vals

    # -- store API ------------------------------------------------------------------------------
    def add(
        self, ids: Sequence[str], vectors: np.ndarray, payloads: Sequence[dict[str, Any]]
    ) -> None:
        vectors = check_batch(ids, vectors, payloads)
        if self._vecs.size and vectors.shape[1] != self._vecs.shape[1]:
            raise ConfigError(f"vector dim {vectors.shape[1]} != index dim {self._vecs.shape[1]}")
        self.delete([i for i in ids if i in self._row])
        base = len(self._ids)
        self._vecs = (
            vectors.astype(self.dtype)
            if not self._vecs.size
            else np.vstack([self._vecs, vectors.astype(self.dtype)])
        )
        if self._codes is not None and len(self._codes) == base and len(ids):
            # keep the fitted quantizer (as a Qdrant segment does) and code only the new rows
            self._codes = np.vstack([self._codes, self._encode(vectors)])
        for j, i in enumerate(ids):
            self._row[i] = base + j
        self._ids.extend(ids)
        self._payloads.extend(dict(p) for p in payloads)

    def delete(self, ids: Sequence[str]) -> None:
        drop = {self._row[i] for i in ids if i in self._row}
        if not drop:
            return
        keep = np.array([r for r in range(len(self._ids)) if r not in drop], dtype=np.int64)
        self._vecs = np.ascontiguousarray(self._vecs[keep]) if len(keep) else self._vecs[:0]
        if self._codes is not None and len(self._codes) == len(self._ids):
            self._codes = np.ascontiguousarray(self._codes[keep])
        self._ids = [self._ids[r] for r in keep]
        self._payloads = [self._payloads[r] for r in keep]
        self._row = {i: r for r, i in enumerate(self._ids)}

    def attach(
        self, ids: Sequence[str], vectors: np.ndarray, payloads: Sequence[dict[str, Any]]
    ) -> None:
        """Serve ``vectors`` ``(N, D)`` as given (e.g. memory-mapped from an index segment) for
        ``ids``, replacing the contents; the compressed index is rebuilt on first search."""
        check_batch(ids, vectors, payloads)
        self._vecs, self._ids, self._payloads = vectors, list(ids), [dict(p) for p in payloads]
        self._row = {i: r for r, i in enumerate(self._ids)}
        self._codes, self._codebook = None, None

    def vectors(self, ids: Sequence[str]) -> np.ndarray:
        return np.asarray(self._vecs[[self._row[i] for i in ids]], dtype=np.float32)

    def search(
        self, queries: np.ndarray, k: int, filter: dict[str, Any] | None = None
    ) -> list[list[tuple[str, float]]]:
        validate_filter(filter)
        if not self._ids:
            return [[] for _ in range(len(queries))]
        q = np.asarray(queries, dtype=np.float32)
        if q.ndim != 2 or q.shape[1] != self._vecs.shape[1]:
            raise ConfigError(
                f"query shape {q.shape} does not match index dim {self._vecs.shape[1]}"
            )
        mask = None
        if filter:
            match = predicate(filter)  # parsed once for all payloads
            mask = np.array([match(p.get("metadata", {})) for p in self._payloads])
        idx: Any
        vals: Any
        if self.quantization == "binary":  # popcount shortlist, asymmetric + float re-scoring
            codes = self._index()
            assert self._codebook is not None  # set by _index()
            if self._words is None or self._words[0] is not codes:
                self._words = (codes, kbin.as_words(codes))
            idx, vals = kbin.search(
                self._codebook, codes, self._vecs, self._truncate(q), k, self.oversampling,
                self.hamming_factor, mask, self.rescore, self._words[1], q_full=q,
            )
            return self._hits(idx, vals)
        if not self.compressed:  # blocked product + partial top-k, no (B, N) score matrix
            return self._hits(*kdense.topk(q, self._vecs, k, mask, self.threads))
        scores = self._approx_scores(q)
        if mask is not None:
            scores[:, ~mask] = -np.inf
        if self.compressed and self.rescore:
            idx, vals = self._rescored(q, scores, k)
        else:
            idx, vals = topk_rows(scores, k)
        return [
            [(self._ids[j], float(v)) for j, v in zip(ri, rv) if np.isfinite(v)]
            for ri, rv in zip(idx, vals)
        ]

    def _hits(self, idx: Any, vals: Any) -> list[list[tuple[str, float]]]:
        return [
            [(self._ids[j], float(v)) for j, v in zip(ri, rv) if np.isfinite(v)]
            for ri, rv in zip(idx, vals)
        ]

    def _save_array(self, path: Path, name: str, a: np.ndarray) -> None:
        write_array(path / f"{name}.npy", a)  # the one writer: temp, fsync, rename

    def save(self, path: Path) -> None:
        path.mkdir(parents=True, exist_ok=True)
        self._save_array(path, "vectors", self._vecs)
        manifest: dict[str, Any] = {
            "ids": self._ids, "payloads": self._payloads, "dtype": self.dtype
        }
        if self.compressed and self._ids:
            self._save_array(path, "codes", self._index())
            if self._codebook is not None:
                self._save_array(path, "thresholds", self._codebook.thresholds)
                self._save_array(path, "levels", self._codebook.levels)
            manifest["index"] = {"quantization": self.quantization, "dims": self.dims}
        atomic_write_text(path / "store.json", json.dumps(manifest))

    def restore(self, path: Path) -> None:
        try:
            manifest = json.loads((path / "store.json").read_text(encoding="utf-8"))
            vecs = np.load(path / "vectors.npy", mmap_mode="r", allow_pickle=False)
        except FileNotFoundError as e:
            raise DataError(f"incomplete exact store at {path}: {e.filename} is missing") from None
        if len(vecs) != len(manifest["ids"]):
            raise DataError(f"{path}: {len(vecs)} vectors but {len(manifest['ids'])} ids")
        self._vecs, self._ids, self._payloads = vecs, manifest["ids"], manifest["payloads"]
        self._row = {i: r for r, i in enumerate(self._ids)}
        self._codes, self._codebook = None, None
        saved = manifest.get("index")
        if saved == {"quantization": self.quantization, "dims": self.dims}:
            # the same compressed index was saved: reuse it (else it is rebuilt on first search)
            codes = np.load(path / "codes.npy", mmap_mode="r", allow_pickle=False)
            if self.quantization is not None:
                self._codebook = qz.Codebook(
                    self.quantization,
                    np.load(path / "thresholds.npy", allow_pickle=False),
                    np.load(path / "levels.npy", allow_pickle=False),
                )
            self._codes = codes if len(codes) == len(self._ids) else None
