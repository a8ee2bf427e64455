"""Exact inner-product top-k over a float matrix: blocked products with a partial top-k per block.

``topk(q, x, k)`` returns, per query row of ``q (B, D)``, the ``k`` rows of ``x (N, D)`` with the
largest ``q . x``, sorted descending, ties broken by the lower row (the order of
:func:`retrievers.stores.exact.topk_rows`, so results equal the one-big-product path's).

The scan walks ``x`` in blocks of ``BLOCK_ROWS`` rows: ``s = q @ block.T`` ``(B, rows)``, then the
block's own top ``k`` (``argpartition``, ties at the k-th place resolved by row) joins a small
candidate pool, which one final sort orders. Rows outside ``allowed`` score ``-inf``.

Cost model (``N`` rows of width ``D``, ``B`` queries, ``e`` bytes per element):

* bytes read: ``N * D * e`` once -- the bound. 1M x 384 float32 is 1.54 GB: at ~40 GB/s of copy
  bandwidth no exact scan can finish in under ~38 ms (``bench/bench_kernels.py`` measures the
  bandwidth in the same run);
* FLOPs ``2 * N * D * B``: a single query is a matrix-vector product, 0.25 FLOP/byte, so it is
  memory-bound. Few queries (up to ``FULL_SCORES`` scores) write their ``(B, N)`` scores (4 MB
  per query at 1M rows) and select once, which measured faster than selecting per block; many
  queries keep each block's ``(B, rows)`` scores in cache and only its top ``k``;
* selection: ``O(N)`` per query, or ``O(rows)`` per block plus ``O(k log k)`` per block to merge;
* threads: blocks are split among ``threads`` workers (numpy releases the GIL in the product);
  BLAS itself should then run one thread per worker (``OMP_NUM_THREADS=1``), else the two levels
  oversubscribe the cores. float16 matrices are converted per block, in cache.

>>> import numpy as np
>>> x = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]], dtype=np.float32)
>>> idx, vals = topk(np.array([[1.0, 0.0]], dtype=np.float32), x, 2)
>>> idx.tolist(), vals.tolist()
([[0, 2]], [[1.0, 1.0]])
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

BLOCK_ROWS = 16_384
FULL_SCORES = 1 << 24  # up to B * N scores (64 MB) one selection over full score rows


def block_topk(s: np.ndarray, k: int) -> np.ndarray:
    """Column indices of the ``k`` best entries per row of ``s (B, n)`` under the order (score
    descending, column ascending), unsorted; all columns when ``n <= k``."""
    n = s.shape[1]
    if n <= k:
        return np.broadcast_to(np.arange(n), s.shape).copy()
    part = np.argpartition(-s, k - 1, axis=1)[:, :k]
    kth = np.take_along_axis(s, part, axis=1).min(axis=1)
    # argpartition picks arbitrary rows among those tied at the k-th value: redo those rows
    tied = (s == kth[:, None]).sum(axis=1) > 1
    for r in np.flatnonzero(tied):
        above = np.flatnonzero(s[r] > kth[r])
        eq = np.flatnonzero(s[r] == kth[r])[: k - len(above)]
        part[r] = np.concatenate([above, eq])
    return part


def _product(q: np.ndarray, x: np.ndarray, lo: int, hi: int) -> np.ndarray:
    return q @ np.asarray(x[lo:hi], dtype=np.float32).T


def _blocks(fn: Callable[[int, int], Any], bounds: list[tuple[int, int]], threads: int) -> list:
    """``fn(lo, hi)`` of every block, split among ``threads`` workers (numpy releases the GIL)."""
    if threads > 1 and len(bounds) > 1:
        with ThreadPoolExecutor(threads) as pool:
            return list(pool.map(lambda b: fn(*b), bounds))
    return [fn(lo, hi) for lo, hi in bounds]


def _scan(q: np.ndarray, x: np.ndarray, k: int, allowed: np.ndarray | None, lo: int, hi: int):
    s = _product(q, x, lo, hi)
    if allowed is not None:
        s[:, ~allowed[lo:hi]] = -np.inf
    part = block_topk(s, k)
    return part + lo, np.take_along_axis(s, part, axis=1)


def topk(
    q: np.ndarray,
    x: np.ndarray,
    k: int,
    allowed: np.ndarray | None = None,
    threads: int = 1,
) -> tuple[np.ndarray, np.ndarray]:
    """Rows ``(B, min(k, N))`` and scores of the ``k`` best rows of ``x`` per query of ``q``.

    Up to ``FULL_SCORES`` scores (few queries: 4 MB per query at 1M rows) the blocks' products
    fill one ``(B, N)`` buffer and one selection runs over it: a selection per block costs
    ~0.3 ms per 16k rows, 20 ms of a 1M-row query that a plain ``x @ q`` + ``argpartition`` does
    not pay (measured, docs/scaling.md). Beyond it each block keeps only its own top ``k``.

    Args:
        q: float32 queries ``(B, D)``.
        x: rows ``(N, D)``, float32 or float16, in memory or memory-mapped.
        k: rows per query (>= 1).
        allowed: boolean mask ``(N,)``; rows outside it score ``-inf`` (callers drop them).
        threads: workers scanning blocks in parallel.
    """
    q = np.ascontiguousarray(q, dtype=np.float32)
    n = len(x)
    k = min(k, n)
    bounds = [(lo, min(lo + BLOCK_ROWS, n)) for lo in range(0, n, BLOCK_ROWS)]
    if len(q) * n <= FULL_SCORES:
        s = np.empty((len(q), n), dtype=np.float32)

        def fill(lo: int, hi: int) -> None:
            s[:, lo:hi] = _product(q, x, lo, hi)

        _blocks(fill, bounds, threads)
        if allowed is not None:
            s[:, ~allowed] = -np.inf
        part = block_topk(s, k)
        parts = [(part, np.take_along_axis(s, part, axis=1))]
    else:
        parts = _blocks(lambda lo, hi: _scan(q, x, k, allowed, lo, hi), bounds, threads)
    rows = np.concatenate([p[0] for p in parts], axis=1)
    vals = np.concatenate([p[1] for p in parts], axis=1)
    order = np.lexsort((rows, -vals), axis=1)[:, :k]
    return np.take_along_axis(rows, order, axis=1), np.take_along_axis(vals, order, axis=1)
