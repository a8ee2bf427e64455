"""Judged@k: the share of the top k that the assessors judged (a pool-bias check)."""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from evals.measures.base import Measure
from evals.measures.prepare import Prepared


def _judged(judged: np.ndarray, n_ret: np.ndarray, k: int | None) -> np.ndarray:
    """judged: (Q, D) bool by rank; n_ret: (Q,) documents retrieved."""
    top = judged if k is None else judged[:, :k]
    seen = n_ret if k is None else np.minimum(n_ret, k)
    hits = top.sum(axis=1).astype(np.float64)
    return np.divide(hits, seen, out=np.zeros_like(hits), where=seen > 0)


class JudgedRate(Measure):
    r"""Judged@k: :math:`|\{\text{judged in top } k\}| / \min(k, |\text{run}|)`.

    A document is judged when the qrels list it with any value, including 0 and negatives
    (judged non-relevant). Same definition as ir_measures' ``Judged@k`` (OpenNIR); an empty ranking
    scores 0. trec_eval has no such measure; ranks follow trec_eval's order as everywhere here.
    """

    name: ClassVar[str] = "Judged"
    aliases: ClassVar[tuple[str, ...]] = ("judged",)

    def _compute(self, prep: Prepared) -> np.ndarray:
        return _judged(prep.judged, prep.n_ret, self.cutoff)


Judged = JudgedRate()
