"""Average precision (MAP when averaged over queries)."""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from evals.measures.base import Measure
from evals.measures.prepare import Prepared


def _ap(relevant: np.ndarray, n_rel: np.ndarray, k: int | None) -> np.ndarray:
    """relevant: (Q, D) bool by rank; n_rel: (Q,) relevant judgments per query."""
    top = relevant if k is None else relevant[:, :k]
    ranks = np.arange(1, top.shape[1] + 1, dtype=np.float64)
    prec_at_hits = np.where(top, np.cumsum(top, axis=1) / ranks, 0.0)
    total = prec_at_hits.sum(axis=1)
    return np.divide(total, n_rel, out=np.zeros_like(total), where=n_rel > 0)


class AveragePrecision(Measure):
    r"""AP@k exactly as trec_eval's ``map_cut.k`` (``map`` without a cutoff).

    .. math:: \mathrm{AP@k} = \frac{1}{R} \sum_{i \le k,\ d_i \text{ relevant}} P@i

    The denominator is ``R``, every relevant judgment of the query (not ``min(R, k)``); ``R = 0``
    scores 0. Reference: trec_eval 9 ``m_map_cut.c`` / ``m_map.c``.
    """

    name: ClassVar[str] = "AP"
    aliases: ClassVar[tuple[str, ...]] = ("map", "map_cut")

    def _compute(self, prep: Prepared) -> np.ndarray:
        return _ap(prep.relevant, prep.n_rel, self.cutoff)


AP = AveragePrecision()
MAP = AP
