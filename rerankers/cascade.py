"""Cascades: cheap rerankers narrow the candidates that the expensive ones then read.

``CascadeReranker([(embedding, 50), (cross_encoder, 20), (llm_listwise, 10)])`` keeps the top 50 by
the embedding reranker, reorders those with the cross-encoder and keeps 20, and lets the LLM order
the last 20, keeping 10. Each stage's ``k`` must be <= the previous one's.

>>> CascadeReranker([(EmbeddingReranker(), 50), (LLMPointwiseReranker(), 10)])   # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import pairwise
from typing import ClassVar

from rag.core.errors import ConfigError
from rag.core.nodes import BaseReranker, check_k
from rag.core.types import Ranking


class CascadeReranker(BaseReranker):
    """Run ``stages`` (``(reranker, k)`` pairs) in order; the output keeps the last stage's scores.

    The output ``stage`` reads ``cascade[<stage>>...]`` with each stage's own label.
    """

    name: ClassVar[str] = "cascade"

    def __init__(self, stages: Sequence[tuple[BaseReranker, int] | list]) -> None:
        pairs: list[tuple[BaseReranker, int]] = []
        for s in stages:
            pair = isinstance(s, (tuple, list)) and len(s) == 2
            if not pair or not isinstance(s[0], BaseReranker):
                raise ConfigError(f"each cascade stage must be a (reranker, k) pair, got {s!r}")
            pairs.append((s[0], check_k(s[1])))
        if not pairs:
            raise ConfigError("a cascade needs at least one (reranker, k) stage")
        ks = [k for _, k in pairs]
        if any(b > a for a, b in pairwise(ks)):
            raise ConfigError(f"cascade stage k values must not increase, got {ks}")
        self.stages = pairs

    @property
    def uses_instruction(self) -> bool:  # type: ignore[override]
        return any(getattr(r, "uses_instruction", False) for r, _ in self.stages)

    def _load(self) -> None:
        for reranker, _ in self.stages:
            reranker.load()

    # The one reranker that keeps its own loop: a cascade is a composition, not a scorer. Each
    # stage drops candidates before the next reads them, so there is no score per input
    # candidate to hand back to the base loop; k checks, thresholds, de-duplication and query
    # batching happen in each stage's own (base-owned) loop.
    def rerank_batch(self, rankings: Sequence[Ranking], k: int | None = None) -> list[Ranking]:
        if k is not None:
            check_k(k)
        out = list(rankings)
        labels = []
        for reranker, stage_k in self.stages:
            out = reranker.rerank_batch(out, k=stage_k)
            labels.append(out[0].stage if out else reranker.name)
        label = f"{self.name}[{'>'.join(labels)}]"
        return [(r.top(k) if k is not None else r).model_copy(update={"stage": label}) for r in out]
