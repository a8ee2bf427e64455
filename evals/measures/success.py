"""Success (Hit): did any relevant document reach the top k."""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from evals.measures.base import Measure
from evals.measures.prepare import Prepared


def _success(relevant: np.ndarray, k: int) -> np.ndarray:
    """relevant: (Q, D) bool by rank."""
    return np.asarray(relevant[:, :k].any(axis=1), dtype=np.float64)


class SuccessRate(Measure):
    r"""Success@k (Hit@k) exactly as trec_eval's ``success.k``: 1 if a relevant document is in
    the top ``k``, else 0. Reference: trec_eval 9 ``m_success.c``.
    """

    name: ClassVar[str] = "Success"
    aliases: ClassVar[tuple[str, ...]] = ("hit", "hits", "success")
    needs_cutoff: ClassVar[bool] = True

    def _compute(self, prep: Prepared) -> np.ndarray:
        return _success(prep.relevant, self.cutoff or 0)


Success = SuccessRate()
Hit = Success
