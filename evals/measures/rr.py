"""Reciprocal rank of the first relevant document (MRR when averaged)."""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from evals.measures.base import Measure
from evals.measures.prepare import Prepared


def _rr(relevant: np.ndarray, k: int | None) -> np.ndarray:
    """relevant: (Q, D) bool by rank."""
    top = relevant if k is None else relevant[:, :k]
    if top.shape[1] == 0:
        return np.zeros(len(relevant))
    first = top.argmax(axis=1)
    return np.where(top.any(axis=1), 1.0 / (first + 1), 0.0)


class ReciprocalRank(Measure):
    r"""RR@k: :math:`1 / \mathrm{rank}` of the first relevant document in the top ``k``, else 0.

    Without a cutoff it equals trec_eval's ``recip_rank``; with one it equals ``recip_rank`` of the
    run cut to its first ``k`` documents in trec_eval's order (trec_eval has no ``recip_rank.k``).
    A constant scorer gets no credit: ties are broken by document id, never in the system's
    favour. Reference: trec_eval 9 ``m_recip_rank.c``.
    """

    name: ClassVar[str] = "RR"
    aliases: ClassVar[tuple[str, ...]] = ("mrr", "recip_rank")

    def _compute(self, prep: Prepared) -> np.ndarray:
        return _rr(prep.relevant, self.cutoff)


RR = ReciprocalRank()
MRR = RR
