"""Exact (brute-force) inner-product search over a numpy matrix, saved as ``.npy`` + JSON.

Search is one matrix product per query batch and ``argpartition`` for the top k, so it is exact
and the reference every approximate index is measured against.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from rag.errors import ConfigError, DataError
from rag.nodes import Node
from rag.persist import atomic_write_text
from retrievers.stores.filters import matches, validate_filter


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
    """In-memory exact store. ``dtype`` ``float32`` (default) or ``float16`` halves memory."""

    name: ClassVar[str] = "exact_store"
    kind: ClassVar[str] = "store"

    def __init__(self, dtype: str = "float32") -> None:
        if dtype not in ("float32", "float16"):
            raise ConfigError(f"dtype must be 'float32' or 'float16', got {dtype!r}")
        self.dtype = dtype
        self._ids: list[str] = []
        self._row: dict[str, int] = {}
        self._vecs = np.zeros((0, 0), dtype=dtype)
        self._payloads: list[dict[str, Any]] = []

    def count(self) -> int:
        return len(self._ids)

    def add(
        self, ids: Sequence[str], vectors: np.ndarray, payloads: Sequence[dict[str, Any]]
    ) -> None:
        vectors = np.asarray(vectors)
        if vectors.ndim != 2 or len(vectors) != len(ids) or len(payloads) != len(ids):
            raise ConfigError(
                f"add() needs N ids, an (N, D) matrix and N payloads; got {len(ids)} ids, "
                f"shape {vectors.shape}, {len(payloads)} payloads"
            )
        if self._vecs.size and vectors.shape[1] != self._vecs.shape[1]:
            raise ConfigError(f"vector dim {vectors.shape[1]} != index dim {self._vecs.shape[1]}")
        self.delete([i for i in ids if i in self._row])
        base = len(self._ids)
        self._vecs = (
            vectors.astype(self.dtype)
            if not self._vecs.size
            else np.vstack([self._vecs, vectors.astype(self.dtype)])
        )
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
        self._ids = [self._ids[r] for r in keep]
        self._payloads = [self._payloads[r] for r in keep]
        self._row = {i: r for r, i in enumerate(self._ids)}

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
        scores = q @ np.asarray(self._vecs, dtype=np.float32).T
        if filter:
            mask = np.array([matches(p.get("metadata", {}), filter) for p in self._payloads])
            scores[:, ~mask] = -np.inf
        idx, vals = topk_rows(scores, k)
        return [
            [(self._ids[j], float(v)) for j, v in zip(ri, rv) if np.isfinite(v)]
            for ri, rv in zip(idx, vals)
        ]

    def save(self, path: Path) -> None:
        path.mkdir(parents=True, exist_ok=True)
        tmp = path / "vectors.npy.tmp"
        with open(tmp, "wb") as f:
            np.save(f, np.ascontiguousarray(self._vecs), allow_pickle=False)
        tmp.replace(path / "vectors.npy")
        manifest = {"ids": self._ids, "payloads": self._payloads, "dtype": self.dtype}
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
