"""Recall at a rank cutoff."""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from evals.measures.base import Measure
from evals.measures.prepare import Prepared


def _recall(relevant: np.ndarray, n_rel: np.ndarray, k: int | None) -> np.ndarray:
    """relevant: (Q, D) bool by rank; n_rel: (Q,) relevant judgments per query."""
    hits = (relevant if k is None else relevant[:, :k]).sum(axis=1).astype(np.float64)
    return np.divide(hits, n_rel, out=np.zeros_like(hits), where=n_rel > 0)


class Recall(Measure):
    r"""R@k exactly as trec_eval's ``recall.k``: :math:`|\{\text{relevant in top } k\}| / R`.

    ``R`` counts the query's judgments with ``rel >= rel_level`` (retrieved or not); a query with
    ``R = 0`` scores 0. Without a cutoff: recall of the whole ranking (``num_rel_ret / num_rel``).
    Reference: trec_eval 9 ``m_recall.c``.
    """

    name: ClassVar[str] = "R"
    aliases: ClassVar[tuple[str, ...]] = ("recall",)

    def _compute(self, prep: Prepared) -> np.ndarray:
        return _recall(prep.relevant, prep.n_rel, self.cutoff)


R = Recall()
