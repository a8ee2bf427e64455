"""Judges of support and relevance: an LLM read through its next-token label probabilities, and
a lexical baseline with the same interface. Used at query time (citation checks of
:class:`rag.pipeline.context.ChunkContext`) and by the evaluation (``evals.answers``), so they sit
below both (formerly ``evals/judges.py``).

An LLM judge renders a versioned template (``prompts/templates/judge_*.txt``) and reads the
probability of each label from the first assistant token, exactly as the pointwise reranker
reads P(yes) (:mod:`rerankers.llm_pointwise`): for labels ``L_1..L_m`` with spellings ``S_j``,

    P(L_j) = sum_{t in first(S_j)} p(t) / sum_i sum_{t in first(S_i)} p(t)

where ``first(S)`` is the first token of each spelling, bare and with a leading space. This is
cheaper and more robust than parsing generated text (ARES, Saad-Falcon et al. 2024, also scores
its judges by label probability; ragas, Es et al. 2024, asks for verdicts in text).

* :meth:`LLMJudge.p_support` ``(contexts, statements) -> (N,)``: P("Yes") to "is the statement
  supported by the context?" (faithfulness, citation support; ragas / ALCE);
* :meth:`LLMJudge.p_relevant` ``(questions, answers) -> (N,)``: P("Yes") to "does the answer
  address the question?" (answer relevance);
* :meth:`LLMJudge.p_stance` ``(claims, evidence) -> (N,)``: P("Support") against P("Contradict").

A judge's scores are uncalibrated until measured against human labels: see :mod:`evals.ppi`
and :func:`evals.answers.judge_agreement`.

>>> LexicalJudge().p_support(["aspirin lowers fever"], ["aspirin lowers fever"]).tolist()
[1.0]
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import numpy as np

import prompts
from rag.core.errors import ConfigError
from rag.core.llm import first_token_ids, get_llm, label_probs

YES_NO = {"yes": ("Yes", "yes", "YES"), "no": ("No", "no", "NO")}
STANCE = {"SUPPORT": ("Support", "support", "Supports"), "CONTRADICT": ("Contradict", "contradict")}
_WORD = re.compile(r"[a-z0-9]+")
_STOP = frozenset(
    "a an the of in on at to for and or but is are was were be been by with as that this these "
    "those it its from which who what when where how why do does did not no than then there".split()
)


def content_tokens(text: str) -> list[str]:
    """Lower-cased alphanumeric tokens without English function words."""
    return [t for t in _WORD.findall(text.lower()) if t not in _STOP]


class SupportJudge(Protocol):
    """What answer metrics need: P(statement supported by context) and P(answer relevant)."""

    name: str

    def p_support(self, contexts: Sequence[str], statements: Sequence[str]) -> np.ndarray: ...

    def p_relevant(self, questions: Sequence[str], answers: Sequence[str]) -> np.ndarray: ...


class LexicalJudge:
    """A deterministic, model-free baseline judge: the share of the statement's content tokens
    that occur in the context (support) or of the question's content tokens in the answer
    (relevance). Empty statements score 1 (nothing to support)."""

    name = "lexical"

    @staticmethod
    def _coverage(sources: Sequence[str], targets: Sequence[str]) -> np.ndarray:
        if len(sources) != len(targets):
            raise ConfigError(f"{len(sources)} sources for {len(targets)} targets; they must align")
        out = []
        for s, t in zip(sources, targets, strict=True):
            want = set(content_tokens(t))
            out.append(len(want & set(content_tokens(s))) / len(want) if want else 1.0)
        return np.asarray(out, dtype=np.float64)

    def p_support(self, contexts: Sequence[str], statements: Sequence[str]) -> np.ndarray:
        return self._coverage(contexts, statements)

    def p_relevant(self, questions: Sequence[str], answers: Sequence[str]) -> np.ndarray:
        return self._coverage(answers, questions)


class LLMJudge:
    """Judges on a chat LLM's next-token label probabilities (default the embedded SmolLM2).

    Args:
        model: short name (``smollm2-135m``), HF id or local path.
        batch_size: prompts per forward pass.
        max_context_tokens: contexts / evidence / answers are cut to this many tokens.
        backend, device: as for :class:`rerankers.LLMPointwiseReranker`.

    The model is the shared runtime of :func:`rag.core.llm.get_llm`: a generator, an LLM reranker
    and this judge on the same model load it once.
    """

    def __init__(
        self,
        model: str = "smollm2-135m",
        batch_size: int = 8,
        max_context_tokens: int = 320,
        backend: str = "auto",
        device: str = "auto",
    ) -> None:
        if batch_size < 1 or max_context_tokens < 1:
            raise ConfigError(
                f"batch_size and max_context_tokens must be >= 1, got {batch_size}, "
                f"{max_context_tokens}"
            )
        self.model = model
        self.batch_size = batch_size
        self.max_context_tokens = max_context_tokens
        self.backend = backend
        self.device = device
        self.name = f"llm:{model}"
        self._lm: Any = None
        self._groups: dict[str, list[list[int]]] = {}

    def load(self) -> LLMJudge:
        if self._lm is None:  # the process-wide runtime: a generator on this model shares it
            self._lm = get_llm(self.backend, self.model, self.device).load()
        return self

    def provenance(self) -> dict[str, str]:
        self.load()
        names = ("judge_faithfulness", "judge_answer_relevance", "judge_stance")
        return {**self._lm.provenance, **{n: prompts.version(n) for n in names}}

    def _label_ids(self, labels: Mapping[str, Sequence[str]]) -> list[list[int]]:
        key = "|".join(labels)
        if key not in self._groups:
            groups = [first_token_ids(self._lm.tokenizer, s) for s in labels.values()]
            flat = [t for g in groups for t in g]
            if len(flat) != len(set(flat)):
                raise ConfigError(
                    f"labels {list(labels)} share a first token in {self.model!r}; "
                    "choose labels whose first tokens differ"
                )
            self._groups[key] = groups
        return self._groups[key]

    def label_probs(
        self,
        template: str,
        labels: Mapping[str, Sequence[str]],
        rows: Sequence[dict[str, str]],
        cut: Sequence[str] = (),
    ) -> np.ndarray:
        """``(N, m)`` label probabilities for ``rows`` of template variables; the fields named
        in ``cut`` are truncated to ``max_context_tokens`` first."""
        self.load()
        groups = self._label_ids(labels)
        rows = [dict(r) for r in rows]
        for field in cut:
            texts = self._lm.truncate([r[field] for r in rows], self.max_context_tokens)
            for r, t in zip(rows, texts, strict=True):
                r[field] = t
        texts = [prompts.render(template, **r) for r in rows]
        return label_probs(self._lm, texts, groups, self.batch_size)

    def p_support(self, contexts: Sequence[str], statements: Sequence[str]) -> np.ndarray:
        rows = [{"context": c, "statement": s} for c, s in zip(contexts, statements, strict=True)]
        return self.label_probs("judge_faithfulness", YES_NO, rows, cut=("context",))[:, 0]

    def p_relevant(self, questions: Sequence[str], answers: Sequence[str]) -> np.ndarray:
        rows = [{"question": q, "answer": a} for q, a in zip(questions, answers, strict=True)]
        return self.label_probs("judge_answer_relevance", YES_NO, rows, cut=("answer",))[:, 0]

    def p_stance(self, claims: Sequence[str], evidence: Sequence[str]) -> np.ndarray:
        """P(SUPPORT) against P(CONTRADICT) for each (claim, evidence) pair."""
        rows = [{"claim": c, "evidence": e} for c, e in zip(claims, evidence, strict=True)]
        return self.label_probs("judge_stance", STANCE, rows, cut=("evidence",))[:, 0]
