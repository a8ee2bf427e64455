"""Extractive compression: keep the sentences most similar to the query under a token budget.

This is the extractive compressor of RECOMP (Xu, Shi & Choi, 2023, "RECOMP: Improving
Retrieval-Augmented LMs with Compression and Selective Augmentation", arXiv:2310.04408) without its
trained sentence encoder: sentences are scored by the cosine between MiniLM vectors of the query
(plus its instruction) and of each sentence, ``score(s) = cos(E(q), E(s))``, and kept greedily
best-first while they fit the budget ``B = max_tokens or floor(ratio * tokens_in)``. Kept sentences
stay in document order; documents stay in ranking order.

>>> ExtractiveCompressor(ratio=0.5).compress(ranking)     # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from rag.compressors.base import (
    BaseCompressor,
    EncoderMixin,
    Kept,
    check_max_tokens,
    check_ratio,
    query_text,
    split_sentences,
    token_budget,
)
from rag.core.types import Ranking


def _select(scores: np.ndarray, lengths: list[int], budget: int) -> list[int]:
    """Greedy best-first: add a sentence when it still fits; always keep the best one.

    Returns indices into ``scores``; the total length is ``<= budget`` unless the best sentence
    alone exceeds it (one sentence of slack).
    """
    order = sorted(range(len(scores)), key=lambda i: (-float(scores[i]), i))
    chosen: list[int] = []
    used = 0
    for i in order:
        if used + lengths[i] <= budget:
            chosen.append(i)
            used += lengths[i]
    if not chosen and order:
        chosen = [order[0]]
    return chosen


class ExtractiveCompressor(EncoderMixin, BaseCompressor):
    """Keep the query-relevant sentences of the ranking's documents (RECOMP-style, extractive).

    Args:
        ratio: budget as a share of the input tokens (ignored when ``max_tokens`` is set).
        max_tokens: absolute budget in tokens.
        per_document: a budget per document (each document keeps at least its best sentence)
            instead of one global budget over the whole ranking (at least one sentence overall).
        keep_empty: keep documents that lost every sentence, with empty text (default: drop).
        encoder: a :class:`~rag.core.encoders.TransformerEncoder`; MiniLM when None.
        tokenizer: tokenizer that measures budgets and ratios.
    """

    name: ClassVar[str] = "extractive_compressor"
    uses_instruction: ClassVar[bool] = True

    def __init__(
        self,
        ratio: float = 0.5,
        max_tokens: int | None = None,
        per_document: bool = False,
        keep_empty: bool = False,
        encoder: Any = None,
        tokenizer: str = "minilm",
    ) -> None:
        self.ratio = check_ratio(ratio)
        self.max_tokens = check_max_tokens(max_tokens)
        self.per_document = bool(per_document)
        self.keep_empty = bool(keep_empty)
        self.encoder = encoder
        self.tokenizer = tokenizer

    def _plan(self, ranking: Ranking) -> list[Kept]:
        sents = [split_sentences(h.document.text) for h in ranking.hits]
        flat = [(d, j) for d, ss in enumerate(sents) for j in range(len(ss))]
        texts = [sents[d][j] for d, j in flat]
        lengths = self._count(texts)
        if texts:
            q = self._enc.encode_queries([query_text(ranking.query)])[0]
            scores = self._enc.encode_documents(texts) @ q
        else:
            scores = np.zeros(0, dtype=np.float32)
        chosen: dict[int, list[int]] = {d: [] for d in range(len(sents))}
        budgets: dict[int, int] = {}
        if self.per_document:
            for d in range(len(sents)):
                idx = [i for i, (dd, _) in enumerate(flat) if dd == d]
                budgets[d] = token_budget(sum(lengths[i] for i in idx), self.ratio, self.max_tokens)
                picked = _select(scores[idx], [lengths[i] for i in idx], budgets[d])
                chosen[d] = sorted(flat[idx[p]][1] for p in picked)
        else:
            budget = token_budget(sum(lengths), self.ratio, self.max_tokens)
            budgets = dict.fromkeys(range(len(sents)), budget)
            for i in _select(scores, lengths, budget):
                chosen[flat[i][0]].append(flat[i][1])
        plan = []
        for d, hit in enumerate(ranking.hits):
            keep = sorted(chosen[d])
            if not keep and not self.keep_empty:
                continue
            info = {
                "budget": budgets[d],
                "scope": "document" if self.per_document else "ranking",
                "kept_sentences": keep,
                "n_sentences": len(sents[d]),
            }
            plan.append(Kept(hit, " ".join(sents[d][j] for j in keep), info))
        return plan
