"""Redundancy removal: near-duplicate filtering and maximal marginal relevance (MMR) ordering.

Near duplicates: walking the ranking best first, a document is dropped when the cosine between
its MiniLM vector and that of any document already kept exceeds ``threshold``.

MMR (Carbonell & Goldstein, 1998, "The Use of MMR, Diversity-Based Reranking for Reordering
Documents and Producing Summaries", SIGIR) then orders the survivors greedily by

    MMR(d) = lambda_mult * cos(q, d) - (1 - lambda_mult) * max_{s in selected} cos(d, s)

so the context a generator reads first is both relevant and non-repetitive. Scores are carried over
unchanged (the output is deliberately not sorted by score in ``mmr`` modes).

>>> RedundancyFilter(mode="dedup", threshold=0.95).compress(ranking)   # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from rag.compressors.base import BaseCompressor, EncoderMixin, Kept, query_text
from rag.core.errors import ConfigError
from rag.core.types import Ranking

MODES = ("dedup", "mmr", "dedup+mmr")


def _dedup(sim: np.ndarray, threshold: float) -> list[int]:
    """Indices kept, in order; ``sim``: (N, N) cosine matrix in ranking order."""
    kept: list[int] = []
    for i in range(sim.shape[0]):
        if not kept or float(sim[i, kept].max()) <= threshold:
            kept.append(i)
    return kept


def _mmr(rel: np.ndarray, sim: np.ndarray, lambda_mult: float) -> list[int]:
    """MMR order of all N items; ``rel``: (N,) query similarity, ``sim``: (N, N)."""
    left = list(range(len(rel)))
    order: list[int] = []
    while left:
        if order:
            red = sim[np.ix_(left, order)].max(axis=1)
        else:
            red = np.zeros(len(left))
        val = lambda_mult * rel[left] - (1 - lambda_mult) * red
        best = left[int(np.argmax(val))]  # argmax takes the first (best-ranked) on ties
        order.append(best)
        left.remove(best)
    return order


class RedundancyFilter(EncoderMixin, BaseCompressor):
    """Drop near-duplicate documents and/or reorder by MMR; texts are never shortened.

    Args:
        mode: ``dedup`` | ``mmr`` | ``dedup+mmr``.
        threshold: cosine above which a document is a near duplicate of a better-ranked one.
        lambda_mult: MMR trade-off in [0, 1]; 1 = pure relevance, 0 = pure diversity.
        encoder: a :class:`~rag.core.encoders.TransformerEncoder`; MiniLM when None.
        tokenizer: tokenizer that measures the ratios.
    """

    name: ClassVar[str] = "redundancy_filter"
    uses_instruction: ClassVar[bool] = True  # MMR relevance uses query + instruction

    def __init__(
        self,
        mode: str = "dedup",
        threshold: float = 0.95,
        lambda_mult: float = 0.5,
        encoder: Any = None,
        tokenizer: str = "minilm",
    ) -> None:
        if mode not in MODES:
            raise ConfigError(f"mode must be one of {MODES}, got {mode!r}")
        if not -1 <= threshold <= 1:
            raise ConfigError(f"threshold must be a cosine in [-1, 1], got {threshold}")
        if not 0 <= lambda_mult <= 1:
            raise ConfigError(f"lambda_mult must be in [0, 1], got {lambda_mult}")
        self.mode = mode
        self.threshold = threshold
        self.lambda_mult = lambda_mult
        self.encoder = encoder
        self.tokenizer = tokenizer

    def _plan(self, ranking: Ranking) -> list[Kept]:
        docs = [h.document for h in ranking.hits]
        vecs = self._enc.encode_documents([d.full_text for d in docs])  # (N, H), unit norm
        sim = vecs @ vecs.T
        idx = list(range(len(docs)))
        if "dedup" in self.mode:
            idx = _dedup(sim, self.threshold)
        if "mmr" in self.mode:
            q = self._enc.encode_queries([query_text(ranking.query)])[0]
            sub = _mmr(vecs[idx] @ q, sim[np.ix_(idx, idx)], self.lambda_mult)
            idx = [idx[j] for j in sub]
        info = {"mode": self.mode, "dropped": len(docs) - len(idx)}
        return [Kept(ranking.hits[i], docs[i].text, {**info, "position_in": i}) for i in idx]
