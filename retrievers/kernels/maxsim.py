"""Exact MaxSim over a packed token matrix (ColBERT's late interaction, Khattab & Zaharia, SIGIR
2020; PLAID's "one matrix product per block, then segment max" layout, Santhanam et al., CIKM 2022).

``MaxSim(q, d) = sum_i max_j <q_i, d_j>``; a document without tokens scores 0.

Layout: every document's token vectors concatenated into one C-contiguous matrix ``t (T, D)`` with
row offsets ``(N + 1,)`` (the token store's own layout, no padding), held in the compute dtype
(float32 for the exact mode, bfloat16 for the fast mode) so that a call converts nothing. A query
``q (Lq, D)`` is scored chunk by chunk: ``sim = t[lo:hi] @ q.T`` (token-major, so that the per-
document max is ``np.maximum.reduceat`` over contiguous rows), then the per-query-token maxima are
summed over ``i`` in order (the reference's order).

Cost model (one query, ``T`` document tokens of width ``D``, ``Lq`` query tokens):

* FLOPs: ``2 * T * D * Lq`` -- scifact with MiniLM: 1.16M tokens x 384 x ~20 = ~18 GFLOP; at the
  ~50 GFLOP/s one Zen 4 core sustains in sgemm that is ~0.35 s, halved with 2 threads;
* bytes: ``T * D * 4`` read once (1.8 GB for scifact), i.e. ~45 ms at 40 GB/s, so the kernel is
  compute-bound and float32 tokens cost nothing extra in time -- only memory (2x the float16
  store);
* what the old path paid on top: converting the float16 matrix to float32 (a fresh 1.8 GB
  allocation, page faults included) on every call -- several times the product itself;
* a padded ``(N, Lmax, D)`` tensor (the plain torch way) multiplies padding too
  (``Lmax / mean(L)``, 1.1-1.3x on scifact) and masks ``N * Lmax * Lq`` entries;
* chunks of ``CHUNK_TOKENS`` rows keep ``sim`` (``CHUNK_TOKENS * Lq * 4`` bytes) in L2.

``mode="bf16"`` holds the tokens in bfloat16 (half the bytes, products in bf16 with float32
accumulation by torch/oneDNN; ``bench/bench_kernels.py`` reports its top-10 agreement with the
exact mode); on a CPU without native bfloat16 (no AVX-512-BF16/AMX) it is emulated, slower than
``float32``, and warns once (:func:`rag.core.runtime.warn_if_bf16_emulated`). ``mode="stream"``
keeps no copy: each chunk is converted from the store's dtype when read (the old behaviour, for
stores larger than RAM).

This module is the one MaxSim of the house: the token store (:class:`PackedTokens`), the
late-interaction reranker and the benchmarks (:func:`maxsim_lists`, ragged matrices) all score
through :meth:`PackedTokens.scores`. ``tests/nodes/test_kernels_maxsim.py`` checks it against a
plain double loop in float64.

>>> import numpy as np
>>> t = np.array([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]], dtype=np.float16)
>>> p = PackedTokens(t, np.array([0, 2, 2, 3]))
>>> [round(float(x), 3) for x in p.scores(np.eye(2, dtype=np.float32), np.array([0, 2]))[0]]
[2.0, 0.0, 1.4]
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from rag.core.errors import ConfigError

MODES = ("float32", "bf16", "stream")
CHUNK_TOKENS = 8192  # rows of the token matrix multiplied at once


def offsets_of(arrays: Sequence[np.ndarray]) -> np.ndarray:
    """Row offsets ``(n + 1,)`` of ``arrays`` once concatenated."""
    return np.concatenate([[0], np.cumsum([len(a) for a in arrays])]).astype(np.int64)


def _chunks(offsets: np.ndarray, budget: int) -> list[tuple[int, int]]:
    """Document ranges ``[a, b)`` holding about ``budget`` tokens each (at least one document)."""
    n = len(offsets) - 1
    out, a = [], 0
    while a < n:
        b = int(np.searchsorted(offsets, offsets[a] + budget, side="right")) - 1
        b = min(max(b, a + 1), n)
        out.append((a, b))
        a = b
    return out


class PackedTokens:
    """A token matrix ready for MaxSim: ``tokens (T, D)`` with ``offsets (N + 1,)``.

    Args:
        tokens: the store's token matrix (float16, float32 or a memory map).
        offsets: document row offsets, ``offsets[0] == 0``, ``offsets[-1] == T``.
        mode: ``float32`` (exact, a float32 copy made once), ``bf16`` (fast, a bfloat16 copy) or
            ``stream`` (no copy; each chunk converted per call).
    """

    def __init__(self, tokens: np.ndarray, offsets: np.ndarray, mode: str = "float32") -> None:
        if mode not in MODES:
            raise ConfigError(f"maxsim mode must be one of {MODES}, got {mode!r}")
        self.mode = mode
        self.offsets = np.asarray(offsets, dtype=np.int64)
        self.lens = np.diff(self.offsets)
        self._src = tokens
        self._t: Any = None
        if mode == "float32":
            self._t = np.ascontiguousarray(tokens, dtype=np.float32)
        elif mode == "bf16":
            import torch

            from rag.core.runtime import warn_if_bf16_emulated

            warn_if_bf16_emulated("MaxSim kernel", "kernel='float32'")  # emulated: slower

            self._t = torch.from_numpy(np.ascontiguousarray(tokens, dtype=np.float32)).bfloat16()
        self._plan = _chunks(self.offsets, CHUNK_TOKENS)

    @property
    def nbytes(self) -> int:
        """Bytes of the compute copy (0 in ``stream`` mode)."""
        if self._t is None:
            return 0
        return int(self._t.nbytes if self.mode == "float32" else self._t.numel() * 2)

    def _sim(self, q: np.ndarray, lo: int, hi: int, qt: Any) -> np.ndarray:
        """``t[lo:hi] @ q.T`` ``(hi - lo, Lq)`` float32."""
        if self.mode == "float32":
            return self._t[lo:hi] @ q.T  # type: ignore[no-any-return]
        if self.mode == "stream":
            return np.asarray(self._src[lo:hi], dtype=np.float32) @ q.T  # type: ignore[no-any-return]
        return (self._t[lo:hi] @ qt).float().numpy()  # type: ignore[no-any-return]

    def _query(self, q: np.ndarray) -> Any:
        if self.mode != "bf16":
            return None
        import torch

        return torch.from_numpy(np.ascontiguousarray(q.T)).bfloat16()

    def scores(self, q: np.ndarray, q_offsets: np.ndarray) -> np.ndarray:
        """Scores ``(B, N)`` of concatenated query tokens ``q (Tq, D)`` float32 with
        ``q_offsets (B + 1,)`` against every document."""
        q = np.ascontiguousarray(q, dtype=np.float32)
        q_offsets = np.asarray(q_offsets, dtype=np.int64)
        n = len(self.lens)
        out = np.zeros((len(q_offsets) - 1, n), dtype=np.float32)
        q_rows = np.flatnonzero(np.diff(q_offsets) > 0)
        if not len(q_rows) or not n:
            return out
        q_starts = q_offsets[:-1][q_rows]
        qt = self._query(q)
        for a, b in self._plan:
            lo, hi = int(self.offsets[a]), int(self.offsets[b])
            cols = np.flatnonzero(self.lens[a:b] > 0)
            if not len(cols):
                continue
            sim = self._sim(q, lo, hi, qt)  # (chunk tokens, Tq)
            best = np.maximum.reduceat(sim, (self.offsets[a:b] - lo)[cols], axis=0)  # (docs, Tq)
            # sum over the query's tokens in order: a reduction along the strided axis 0
            out[np.ix_(q_rows, a + cols)] = np.add.reduceat(best.T, q_starts, axis=0)
        return out

    def score_rows(self, q: np.ndarray, rows: Sequence[int]) -> np.ndarray:
        """MaxSim of one query ``q (Lq, D)`` against the documents at ``rows`` -> ``(len,)``
        (a reranking call: the candidates' rows are gathered, then one product)."""
        q = np.ascontiguousarray(q, dtype=np.float32)
        at = np.asarray(rows, dtype=np.int64)
        out = np.zeros(len(at), dtype=np.float32)
        lens = self.lens[at]
        keep = np.flatnonzero(lens > 0)
        if not len(keep) or not len(q):
            return out
        starts = self.offsets[at[keep]]
        idx = np.repeat(starts - np.cumsum(np.concatenate([[0], lens[keep][:-1]])), lens[keep])
        idx += np.arange(len(idx))
        seg = np.concatenate([[0], np.cumsum(lens[keep])[:-1]])
        if self.mode == "bf16":
            sim = (self._t[idx] @ self._query(q)).float().numpy()
        else:
            src = self._t if self.mode == "float32" else self._src
            sim = np.asarray(src[idx], dtype=np.float32) @ q.T
        best = np.maximum.reduceat(sim, seg, axis=0)
        out[keep] = np.add.reduceat(best.T, [0], axis=0)[0]  # in order, as ``scores``
        return out


def maxsim_lists(queries: Sequence[np.ndarray], docs: Sequence[np.ndarray]) -> np.ndarray:
    """Scores ``(B, N)`` float32 of ragged lists of query ``(Lq_i, D)`` and document
    ``(Ld_j, D)`` matrices (concatenated once, then :meth:`PackedTokens.scores`).

    >>> q = np.array([[1.0, 0.0], [0.0, 1.0]]); d = np.array([[0.5, 0.5], [1.0, 0.0]])
    >>> maxsim_lists([q], [d, d[:0]]).tolist()
    [[1.5, 0.0]]
    """
    if not len(queries) or not len(docs):
        return np.zeros((len(queries), len(docs)), dtype=np.float32)
    t = np.concatenate([np.asarray(d, dtype=np.float32) for d in docs])
    q = np.concatenate([np.asarray(x, dtype=np.float32) for x in queries])
    return PackedTokens(t, offsets_of(docs)).scores(q, offsets_of(queries))
