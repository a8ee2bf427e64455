"""Tolerances for tests that compare floats computed two ways, and a ranking comparison that
respects them (issue #27: the suite must pass on any x86-64 CPU, whichever BLAS kernel runs).

Why not bit-exact: two float32 computations of the same dot product in a different order (a
blocked scan vs one big product, ``t @ q.T`` vs ``q @ t.T``, a batch vs one row, AVX2 vs AVX-512
kernels with another FMA grouping) differ by a few ulps. The standard bound (Higham, *Accuracy and
Stability of Numerical Algorithms*, 2nd ed., section 3.1) for a length-``n`` dot product is

    |fl(x . y) - x . y| <= gamma_n * sum_i |x_i y_i|,   gamma_n = n u / (1 - n u) ~ n u,

with ``u = eps / 2`` the unit roundoff; two orders therefore differ by at most
``~ n * eps * sum_i |x_i y_i|``. :func:`dot_tol` is that bound, :func:`maxsim_tol` its sum over
query tokens. A test is bit-exact only where the order of operations is fixed by construction
(the same call on the same operands and shapes), and says so where it relies on it.

Rankings: scores must match within the tolerance; ids must match exactly where neighbouring
reference scores differ by more than the tolerance; inside a near-tied group (chained gaps
``<= tol``) the ids are compared as sets. The last group may be cut by ``k``: there the candidate
ids come from the reference's full scores when given (every id whose score is within ``tol`` of
the cut), else only its size is checked.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

EPS32 = float(np.finfo(np.float32).eps)  # 2**-23: one ulp at 1.0
EPS16 = float(np.finfo(np.float16).eps)  # 2**-10


def dot_tol(n: int, scale: float = 1.0, eps: float = EPS32) -> float:
    """Largest difference between two summation orders of a length-``n`` dot product whose
    ``sum |x_i y_i|`` is at most ``scale`` (``||x|| ||y||`` bounds it by Cauchy-Schwarz)."""
    return float(n * eps * scale)


def maxsim_tol(n_query_tokens: int, dim: int, token_scale: float = 1.0) -> float:
    """MaxSim ``sum_i max_j q_i . d_j`` over ``n_query_tokens`` terms: each max carries one dot
    product's error (the max itself is exact), and the sum of ``Lq`` terms of size
    ``<= token_scale`` adds ``Lq * eps * Lq * token_scale`` at most."""
    lq = max(1, n_query_tokens)
    return float(lq * dot_tol(dim, token_scale) + dot_tol(lq, lq * token_scale))


def near_tie_groups(scores: Sequence[float], tol: float) -> list[range]:
    """Positions of a descending score list split where neighbours differ by more than ``tol``."""
    out, start = [], 0
    for i in range(1, len(scores)):
        if scores[i - 1] != scores[i] and scores[i - 1] - scores[i] > tol:  # -inf == -inf
            out.append(range(start, i))
            start = i
    if len(scores):
        out.append(range(start, len(scores)))
    return out


def assert_rankings_match(
    got_ids: Sequence,
    got_scores: Sequence[float],
    want_ids: Sequence,
    want_scores: Sequence[float],
    tol: float,
    full: Mapping | np.ndarray | None = None,
) -> None:
    """``got`` equals the reference ranking ``want`` up to ``tol`` (see the module docstring).

    ``full``: the reference score of every candidate (a mapping id -> score, or an array indexed by
    id), to check ids that enter a near-tied group at the ``k`` cut.
    """
    got_ids, want_ids = list(got_ids), list(want_ids)
    g, w = np.asarray(got_scores, dtype=np.float64), np.asarray(want_scores, dtype=np.float64)
    assert len(got_ids) == len(want_ids), f"{len(got_ids)} hits, want {len(want_ids)}"
    assert len(set(got_ids)) == len(got_ids), "duplicate ids"
    finite = np.isfinite(w)
    np.testing.assert_array_equal(np.isfinite(g), finite)
    np.testing.assert_allclose(g[finite], w[finite], rtol=0, atol=tol)
    groups = near_tie_groups(list(np.where(finite, w, -np.inf)), tol)
    for n, grp in enumerate(groups):
        a = {got_ids[i] for i in grp}
        b = {want_ids[i] for i in grp}
        if n < len(groups) - 1 or a == b:
            assert a == b, f"positions {grp.start}..{grp.stop - 1}: {sorted(a)} != {sorted(b)}"
        elif full is not None:  # the cut may fall inside a near-tie: any tied id may be kept
            cut = w[grp.stop - 1]
            for i in a - b:
                s = full[i]
                assert abs(float(s) - cut) <= tol or not np.isfinite(cut), (
                    f"{i!r} (score {float(s)}) is not tied with the cut ({cut})"
                )


def assert_same_ranking(got, want, tol: float, full: Mapping | None = None) -> None:
    """:func:`assert_rankings_match` on two :class:`rag.core.types.Ranking` s (same query too)."""
    assert got.query == want.query
    assert_rankings_match(got.ids, got.scores, want.ids, want.scores, tol, full)
