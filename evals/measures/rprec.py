"""R-precision: precision at rank R, the number of relevant documents."""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from evals.measures.base import Measure
from evals.measures.prepare import Prepared


def _rprec(relevant: np.ndarray, n_rel: np.ndarray) -> np.ndarray:
    """relevant: (Q, D) bool by rank (D must cover max R or the whole run); n_rel: (Q,)."""
    within = np.arange(relevant.shape[1])[None, :] < n_rel[:, None]
    hits = (relevant & within).sum(axis=1).astype(np.float64)
    return np.divide(hits, n_rel, out=np.zeros_like(hits), where=n_rel > 0)


class RPrecision(Measure):
    r"""R-precision exactly as trec_eval's ``Rprec``: relevant documents in the top ``R``,
    divided by ``R``.

    ``R`` counts the query's relevant judgments; ``R = 0`` scores 0. Takes no cutoff.
    Reference: trec_eval 9 ``m_Rprec.c``.
    """

    name: ClassVar[str] = "Rprec"
    aliases: ClassVar[tuple[str, ...]] = ("rprecision", "r_prec")
    takes_cutoff: ClassVar[bool] = False

    def depth(self) -> int | None:
        return None  # R varies per query; prepare() keeps the whole ranking

    def _compute(self, prep: Prepared) -> np.ndarray:
        return _rprec(prep.relevant, prep.n_rel)


Rprec = RPrecision()
