"""Precision at a rank cutoff."""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from evals.measures.base import Measure
from evals.measures.prepare import Prepared


def _precision(relevant: np.ndarray, k: int) -> np.ndarray:
    """relevant: (Q, D) bool by rank."""
    return relevant[:, :k].sum(axis=1) / k


class Precision(Measure):
    r"""P@k exactly as trec_eval's ``P.k``: :math:`|\{\text{relevant in top } k\}| / k`.

    The denominator is always ``k``: a ranking shorter than ``k`` is padded with non-relevant
    documents (trec_eval's convention). Reference: trec_eval 9 ``m_P.c``.
    """

    name: ClassVar[str] = "P"
    aliases: ClassVar[tuple[str, ...]] = ("precision", "prec")
    needs_cutoff: ClassVar[bool] = True

    def _compute(self, prep: Prepared) -> np.ndarray:
        return _precision(prep.relevant, self.cutoff or 0)


P = Precision()
