"""Exact MaxSim (late interaction, Khattab & Zaharia, ColBERT, SIGIR 2020).

``MaxSim(q, d) = sum_i max_j <q_i, d_j>`` over the query's token vectors ``q_i`` and the
document's ``d_j``. A document (or query) with no tokens scores 0.

Three forms, all equal (``tests/test_multivector_maxsim.py`` checks them against
:func:`maxsim_naive` on random ragged inputs):

* :func:`maxsim_naive` -- the double loop, the reference.
* :func:`maxsim_padded` -- batched over padded tensors with masks.
* :func:`maxsim_flat` -- over concatenated token matrices plus offsets (the token store's layout):
  one matrix product per chunk, then segment max / segment sum with ``ufunc.reduceat``.

>>> import numpy as np
>>> q = np.array([[1.0, 0.0], [0.0, 1.0]]); d = np.array([[0.5, 0.5], [1.0, 0.0]])
>>> float(maxsim_naive(q, d))
1.5
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

# cap on the (query tokens x document tokens) block materialised at once
_BLOCK = 1 << 24


def maxsim_naive(q: np.ndarray, d: np.ndarray) -> float:
    """Reference: ``q (Lq, D)``, ``d (Ld, D)`` -> ``sum_i max_j q_i . d_j`` (plain loops)."""
    if len(q) == 0 or len(d) == 0:
        return 0.0
    total = 0.0
    for qi in q:
        total += max(float(np.dot(qi, dj)) for dj in d)
    return total


def maxsim_padded(
    q: np.ndarray, q_mask: np.ndarray, d: np.ndarray, d_mask: np.ndarray
) -> np.ndarray:
    """Scores ``(B, N)`` for padded queries ``q (B, Lq, D)`` / ``q_mask (B, Lq)`` against padded
    documents ``d (N, Ld, D)`` / ``d_mask (N, Ld)`` (masks: True = real token)."""
    q_mask = np.asarray(q_mask, dtype=bool)
    d_mask = np.asarray(d_mask, dtype=bool)
    B, Lq, _ = q.shape
    N, Ld, _ = d.shape
    out = np.zeros((B, N), dtype=np.result_type(q, d))
    step = max(1, _BLOCK // max(1, B * Lq * Ld))
    for s in range(0, N, step):
        sim = np.einsum("bqh,nlh->bnql", q, d[s : s + step])
        sim = np.where(d_mask[None, s : s + step, None, :], sim, -np.inf)
        best = sim.max(axis=-1, initial=-np.inf)
        best = np.where(np.isfinite(best), best, 0.0)  # documents without tokens
        out[:, s : s + step] = (best * q_mask[:, None, :]).sum(-1)
    return out


def offsets_of(arrays: Sequence[np.ndarray]) -> np.ndarray:
    """Row offsets ``(n + 1,)`` of ``arrays`` once concatenated."""
    return np.concatenate([[0], np.cumsum([len(a) for a in arrays])]).astype(np.int64)


def maxsim_flat(
    q: np.ndarray, q_offsets: np.ndarray, t: np.ndarray, d_offsets: np.ndarray
) -> np.ndarray:
    """Scores ``(B, N)`` for concatenated query tokens ``q (Tq, D)`` with ``q_offsets (B + 1,)``
    against concatenated document tokens ``t (Td, D)`` with ``d_offsets (N + 1,)``.

    ``t`` may be float16 or a memory map: it is read chunk by chunk and multiplied in the dtype
    of ``q``.
    """
    q_offsets = np.asarray(q_offsets, dtype=np.int64)
    d_offsets = np.asarray(d_offsets, dtype=np.int64)
    B, N = len(q_offsets) - 1, len(d_offsets) - 1
    out = np.zeros((B, N), dtype=q.dtype if q.dtype == np.float64 else np.float32)
    if B == 0 or N == 0 or len(q) == 0:
        return out
    q_lens = np.diff(q_offsets)
    q_rows = np.flatnonzero(q_lens > 0)
    q_starts = q_offsets[:-1][q_rows]
    budget = max(1, _BLOCK // len(q))
    a = 0
    while a < N:
        # take documents until the chunk holds ~budget tokens (always at least one document)
        b = int(np.searchsorted(d_offsets, d_offsets[a] + budget, side="right")) - 1
        b = min(max(b, a + 1), N)
        lo, hi = int(d_offsets[a]), int(d_offsets[b])
        lens = np.diff(d_offsets[a : b + 1])
        cols = np.flatnonzero(lens > 0)
        if len(cols):
            block = np.asarray(t[lo:hi], dtype=q.dtype)
            sim = q @ block.T  # (Tq, chunk tokens)
            starts = (d_offsets[a:b] - lo)[cols]
            best = np.maximum.reduceat(sim, starts, axis=1)  # (Tq, docs with tokens)
            out[np.ix_(q_rows, a + cols)] = np.add.reduceat(best, q_starts, axis=0)
        a = b
    return out


def maxsim_lists(queries: Sequence[np.ndarray], docs: Sequence[np.ndarray]) -> np.ndarray:
    """Scores ``(B, N)`` for ragged lists of query ``(Lq_i, D)`` and document ``(Ld_j, D)``
    matrices."""
    if not queries or not docs:
        return np.zeros((len(queries), len(docs)), dtype=np.float32)
    q = np.concatenate(queries)
    t = np.concatenate(docs)
    return maxsim_flat(q, offsets_of(queries), t, offsets_of(docs))
