"""nDCG: normalised discounted cumulative gain (Järvelin & Kekäläinen, ACM TOIS 20(4), 2002)."""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from evals.measures.base import Measure
from evals.measures.prepare import Prepared, discounts


def _ndcg(rels: np.ndarray, ideal: np.ndarray, k: int | None) -> np.ndarray:
    """rels: (Q, D) qrels values by rank; ideal: (Q, I) positive gains sorted descending."""
    top = rels if k is None else rels[:, :k]
    gains = np.where(top > 0, top, 0).astype(np.float64)
    dcg = gains @ discounts(gains.shape[1]) if gains.shape[1] else np.zeros(len(rels))
    best = ideal if k is None else ideal[:, :k]
    idcg = best @ discounts(best.shape[1]) if best.shape[1] else np.zeros(len(rels))
    return np.divide(dcg, idcg, out=np.zeros_like(dcg), where=idcg > 0)


class NDCG(Measure):
    r"""nDCG@k exactly as trec_eval's ``ndcg_cut.k`` (and ``ndcg`` without a cutoff).

    .. math:: \mathrm{nDCG@k} = \frac{\sum_{i=1}^{k} g_i / \log_2(i+1)}
                                     {\sum_{i=1}^{k} g^*_i / \log_2(i+1)}

    ``g_i`` is the qrels value of the document at rank ``i`` when it is > 0 (linear gain, no
    ``2^rel - 1``), else 0; ``g*`` are all the query's positive qrels values sorted descending
    (the ideal ranking, from every judged document, retrieved or not). A query with no positive
    judgment scores 0. Ranks follow trec_eval's order (see :mod:`evals.measures.prepare`).
    Reference: trec_eval 9 ``m_ndcg_cut.c``.
    """

    name: ClassVar[str] = "nDCG"
    aliases: ClassVar[tuple[str, ...]] = ("ndcg_cut",)

    def _compute(self, prep: Prepared) -> np.ndarray:
        return _ndcg(prep.rels, prep.ideal, self.cutoff)


nDCG = NDCG()
