"""Model-free context selection: relevance cutoffs and lost-in-the-middle ordering.

``RelevanceCutoff`` keeps the hits whose score is ``>= threshold`` and/or those above the largest
gap between consecutive scores (an adaptive cutoff), never fewer than ``min_k``.

``LostInTheMiddleReorder`` follows Liu et al. (2024, "Lost in the Middle: How Language Models Use
Long Contexts", TACL, arXiv:2307.03172): models use the start and end of a long context best, so
the best hits go to both ends and the weakest to the middle. With hits ranked 1..n by score the
output is ``1, 3, 5, ..., 6, 4, 2`` (as Haystack's ``LostInTheMiddleRanker``).

>>> RelevanceCutoff(adaptive=True, min_k=2).compress(ranking)   # doctest: +SKIP
"""

from __future__ import annotations

from typing import ClassVar

from rag.compressors.base import BaseCompressor, Kept
from rag.core.errors import ConfigError
from rag.core.nodes import check_k
from rag.core.types import Hit, Ranking


def _by_score(ranking: Ranking) -> list[int]:
    """Positions of the hits, best score first (ties: earlier position first)."""
    return sorted(range(len(ranking.hits)), key=lambda i: (-ranking.hits[i].score, i))


def largest_gap_cut(scores: list[float], min_k: int) -> int:
    """How many of the (descending) ``scores`` to keep: cut at the largest drop after ``min_k``."""
    if len(scores) <= min_k:
        return len(scores)
    gaps = [(scores[i - 1] - scores[i], -i) for i in range(min_k, len(scores))]
    return -max(gaps)[1]  # largest gap, earliest position on ties


class RelevanceCutoff(BaseCompressor):
    """Drop weak hits by an absolute score threshold and/or the largest score gap.

    Args:
        threshold: keep hits with ``score >= threshold`` (None: no threshold).
        adaptive: also cut at the largest gap between consecutive scores.
        min_k: always keep at least this many hits (the best by score).
        tokenizer: tokenizer that measures the ratios.
    """

    name: ClassVar[str] = "relevance_cutoff"

    def __init__(
        self,
        threshold: float | None = None,
        adaptive: bool = False,
        min_k: int = 1,
        tokenizer: str = "minilm",
    ) -> None:
        check_k(min_k)
        if threshold is None and not adaptive:
            raise ConfigError("set threshold=<score> and/or adaptive=True; neither is set")
        self.threshold = threshold
        self.adaptive = bool(adaptive)
        self.min_k = min_k
        self.tokenizer = tokenizer

    def _plan(self, ranking: Ranking) -> list[Kept]:
        order = _by_score(ranking)
        hits = ranking.hits
        keep = order
        if self.threshold is not None:
            keep = [i for i in keep if hits[i].score >= self.threshold]
        if self.adaptive:
            keep = keep[: largest_gap_cut([hits[i].score for i in keep], self.min_k)]
        if len(keep) < self.min_k:
            keep = order[: self.min_k]
        kept = set(keep)
        info = {"dropped": len(hits) - len(kept)}
        return [Kept(h, h.document.text, info) for i, h in enumerate(hits) if i in kept]


class LostInTheMiddleReorder(BaseCompressor):
    """Put the best hits at the beginning and the end of the context, the weakest in the middle.

    Args:
        tokenizer: tokenizer that measures the ratios (always 1.0: no text is removed).
    """

    name: ClassVar[str] = "lost_in_the_middle"

    def __init__(self, tokenizer: str = "minilm") -> None:
        self.tokenizer = tokenizer

    def _plan(self, ranking: Ranking) -> list[Kept]:
        order = _by_score(ranking)
        arranged = order[0::2] + order[1::2][::-1]
        hits: tuple[Hit, ...] = ranking.hits
        return [
            Kept(hits[i], hits[i].document.text, {"rank_by_score": order.index(i) + 1})
            for i in arranged
        ]
