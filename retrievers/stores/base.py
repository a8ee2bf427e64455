"""The vector store interface: ids + vectors + payloads in, top-k (id, score) lists out.

Scores are inner products of the stored and query vectors (cosine for normalised vectors).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from rag.core.errors import ConfigError


def check_batch(
    ids: Sequence[str], vectors: Any, payloads: Sequence[Any], dtype: Any = None
) -> np.ndarray:
    """The ``(N, D)`` matrix of one ``add()`` batch; raises unless N ids and N payloads come."""
    vectors = np.asarray(vectors, dtype=dtype)
    if vectors.ndim != 2 or len(vectors) != len(ids) or len(payloads) != len(ids):
        raise ConfigError(
            f"add() needs N ids, an (N, D) matrix and N payloads; got {len(ids)} ids, "
            f"shape {vectors.shape}, {len(payloads)} payloads"
        )
    return vectors


@runtime_checkable
class VectorStore(Protocol):
    def add(
        self, ids: Sequence[str], vectors: np.ndarray, payloads: Sequence[dict[str, Any]]
    ) -> None:
        """Insert or replace vectors ``(N, D)`` under string ids."""

    def delete(self, ids: Sequence[str]) -> None: ...

    def search(
        self, queries: np.ndarray, k: int, filter: dict[str, Any] | None = None
    ) -> list[list[tuple[str, float]]]:
        """Top-``k`` ``(id, score)`` per query row of ``queries`` ``(B, D)``, best first."""

    def count(self) -> int: ...

    def save(self, path: Path) -> None: ...

    def restore(self, path: Path) -> None: ...

    def to_config(self) -> dict[str, Any]: ...
