"""LLM pointwise reranking: relevance read from the next-token distribution of a chat LLM.

Binary (``graded=False``, template ``rerank_pointwise.txt``): the model is asked "Does the passage
answer the query? Answer Yes or No." and the score is

    P(yes) = sum_{t in YES} p(t) / (sum_{t in YES} p(t) + sum_{t in NO} p(t))

over the first assistant token, where YES / NO are the single-token spellings of
``Yes, yes, YES`` and ``No, no, NO``, with and without a leading space (for SmolLM2:
``Yes``=10539, `` Yes``=9230, ``yes``=10407, `` yes``=9805; ``No``=5230, `` No``=2838,
``no``=4607, `` no``=787). This is the "yes/no" relevance of Nogueira et al. 2020 (monoT5) and
Liang et al. 2022 (HELM) applied to a decoder model.

Graded (``graded=True``, template ``rerank_pointwise_graded.txt``): the expected grade
``sum_g g * p(g) / sum_g p(g)`` over the tokens ``0``..``3`` (Zhuang et al. 2023, "Beyond Yes and
No"), a score in [0, 3].

Prompts are batched with left padding. ``Query.instruction`` is put in the prompt.

>>> rr = LLMPointwiseReranker("smollm2-135m")
>>> rr.rerank(ranking, k=10)                                   # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import numpy as np

import prompts
from rag.core.errors import ConfigError
from rag.core.llm import BACKENDS, get_llm, label_probs, single_token_ids
from rag.core.nodes import BaseReranker
from rag.core.types import Document, Query
from rerankers._common import (
    doc_text,
    instruction_line,
    template_tag,
)

YES = ("Yes", "yes", "YES")
NO = ("No", "no", "NO")
GRADES = ("0", "1", "2", "3")


class LLMPointwiseReranker(BaseReranker):
    """Score each (query, passage) pair by the LLM's next-token probability of "yes" (or grade).

    Args:
        model: short name (``smollm2-135m``), HF id or local path of a chat LLM.
        graded: expected 0-3 grade instead of P(yes).
        batch_size: prompts per forward pass.
        max_passage_tokens: passages are cut to this many tokens.
        threshold: drop hits scoring below this after reranking.
        backend: ``auto`` (vLLM with a GPU, else transformers) | ``transformers`` | ``vllm``.
        device: for the transformers backend: ``auto`` | ``cpu`` | ``cuda``.
    """

    name: ClassVar[str] = "llm_pointwise"
    uses_instruction: ClassVar[bool] = True

    def __init__(
        self,
        model: str = "smollm2-135m",
        graded: bool = False,
        batch_size: int = 16,
        max_passage_tokens: int = 256,
        threshold: float | None = None,
        backend: str = "auto",
        device: str = "auto",
    ) -> None:
        if backend not in BACKENDS:
            raise ConfigError(f"backend must be one of {BACKENDS}, got {backend!r}")
        if batch_size < 1 or max_passage_tokens < 1:
            raise ConfigError(
                "batch_size and max_passage_tokens must be >= 1, "
                f"got {batch_size}, {max_passage_tokens}"
            )
        self.model = model
        self.graded = graded
        self.batch_size = batch_size
        self.max_passage_tokens = max_passage_tokens
        self.threshold = self.check_threshold(threshold)
        self.backend = backend
        self.device = device

    def _load(self) -> None:
        self.lm = get_llm(self.backend, self.model, self.device).load()
        tok = self.lm.tokenizer
        self.template = "rerank_pointwise_graded" if self.graded else "rerank_pointwise"
        if self.graded:
            groups = [single_token_ids(tok, [g]) for g in GRADES]
        else:
            groups = [single_token_ids(tok, YES), single_token_ids(tok, NO)]
        if not all(groups):
            raise ConfigError(f"model {self.model!r} has no single-token answer for every label")
        self._groups = groups

    def provenance(self) -> dict[str, str]:
        """The LLM's record (backend and versions, model path and revision) and the prompt."""
        if not self._loaded:
            return {}
        return {
            **self.lm.provenance,
            "model": self.model,  # as configured (the shared runtime may know an alias)
            "prompt": template_tag(self.template),
        }

    def prompts(self, query: Query, docs: Sequence[Document]) -> list[str]:
        """The user messages sent for ``docs`` (passages cut to ``max_passage_tokens``)."""
        self.load()
        passages = self.lm.truncate([doc_text(d) for d in docs], self.max_passage_tokens)
        inst = instruction_line(query)
        return [
            prompts.render(self.template, instruction=inst, query=query.text, passage=p)
            for p in passages
        ]

    def _score(self, query: Query, docs: list[Document]) -> Sequence[float]:
        texts = self.prompts(query, docs)  # loads the model
        probs = label_probs(self.lm, texts, self._groups, self.batch_size)
        if self.graded:  # the expected grade
            return (probs @ np.arange(len(self._groups), dtype=np.float64)).tolist()
        return probs[:, 0].tolist()
