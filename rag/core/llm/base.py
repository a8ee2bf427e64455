"""What every LLM backend offers, and the label-probability helpers built on it.

An LLM runtime (:class:`rag.core.llm.TransformersLLM`, :class:`rag.core.llm.VLLMLLM`) holds one
loaded causal LM; generators, LLM rerankers and LLM judges ask :func:`rag.core.llm.get_llm` for it,
so one model is loaded once per process whoever uses it. Operations (prompts are single user
messages wrapped in the model's chat template, the assistant turn opened):

* ``next_token_logprobs(prompts, token_ids) -> (B, T)``: log-probabilities of chosen tokens as
  the first assistant token (the pointwise "yes/no" relevance of Nogueira et al. 2020 / monoT5,
  Liang et al. 2022 / HELM; the label-probability judges of ARES, Saad-Falcon et al. 2024);
* ``generate(prompts, max_new_tokens, allowed_chars, prefix) -> list[str]``: batched greedy
  decoding of the assistant turn, which starts with ``prefix`` (returned as part of the text),
  optionally constrained to tokens made only of ``allowed_chars`` plus EOS (RankGPT-style
  listwise reranking, Sun et al. 2023);
* ``truncate(texts, max_tokens)``: texts cut to the model's own token count;
* the generator side: ``stream`` (transformers: token pieces) or ``chat`` (vLLM: finished texts
  for a batch of conversations), with model-side stop strings.

The HTTP backend (:class:`rag.core.llm.HTTPLLM`, behind
:class:`rag.generators.OpenAICompatibleGenerator`) holds no weights, so there is nothing to share:
it offers whole and streamed chat completions only (no next-token distribution by token id).
"""

from __future__ import annotations

import importlib.metadata as md
from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np

from rag.core.errors import ConfigError
from rag.core.extras import require

BACKENDS = ("auto", "transformers", "vllm")


class ScoringLM(Protocol):
    """The operations LLM rerankers and judges use (both backends and test stand-ins)."""

    provenance: dict[str, str]

    def truncate(self, texts: Sequence[str], max_tokens: int) -> list[str]: ...

    def next_token_logprobs(
        self, prompts: Sequence[str], token_ids: Sequence[int]
    ) -> np.ndarray: ...

    def generate(
        self,
        prompts: Sequence[str],
        max_new_tokens: int,
        allowed_chars: str | None = None,
        prefix: str = "",
    ) -> list[str]: ...


def pick_backend(backend: str) -> str:
    """``auto`` picks vLLM when it is installed and a GPU is visible, transformers otherwise;
    a backend named explicitly is used or fails loudly."""
    if backend not in BACKENDS:
        raise ConfigError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if backend != "auto":
        return backend
    import importlib.util

    if importlib.util.find_spec("vllm") is not None:
        torch = require("torch", feature="LLM backends")
        if torch.cuda.is_available():
            return "vllm"
    return "transformers"


def provenance(backend: str, model: str, lm: Any = None) -> dict[str, str]:
    """What produced a score: backend and its version, model id and, when known, its revision."""

    def version(dist: str) -> str:
        try:
            return md.version(dist)
        except md.PackageNotFoundError:
            return "unknown"

    rec = {"backend": backend, "backend_version": version(backend), "model": model}
    if backend == "transformers":
        rec["torch_version"] = version("torch")
    config = getattr(lm, "config", None)
    for key in ("_name_or_path", "_commit_hash"):
        value = getattr(config, key, None)
        if value:
            rec[key.strip("_")] = str(value)
    return rec


def _spelling_ids(tokenizer: Any, spellings: Sequence[str], single: bool) -> list[int]:
    ids: list[int] = []
    for s in spellings:
        for variant in (s, " " + s):
            enc = tokenizer.encode(variant, add_special_tokens=False)
            if enc and (len(enc) == 1 or not single) and enc[0] not in ids:
                ids.append(enc[0])
    return ids


def single_token_ids(tokenizer: Any, spellings: Sequence[str]) -> list[int]:
    """Ids of the spellings, bare and with a leading space, that are one token."""
    return _spelling_ids(tokenizer, spellings, single=True)


def first_token_ids(tokenizer: Any, spellings: Sequence[str]) -> list[int]:
    """The first token id of each spelling, bare and with a leading space (deduplicated)."""
    return _spelling_ids(tokenizer, spellings, single=False)


def label_probs(
    lm: Any, prompts: Sequence[str], groups: Sequence[Sequence[int]], batch_size: int
) -> np.ndarray:
    """``(N, m)``: for each prompt, the probability of each label group (its tokens' next-token
    probabilities summed) among the ``m`` groups, from ``lm.next_token_logprobs`` in batches:

        P(L_j) = sum_{t in G_j} p(t) / sum_i sum_{t in G_i} p(t)
    """
    flat = [t for g in groups for t in g]
    bounds = np.cumsum([0, *(len(g) for g in groups)])
    out = np.empty((len(prompts), len(groups)))
    for start in range(0, len(prompts), batch_size):
        logp = lm.next_token_logprobs(prompts[start : start + batch_size], flat)
        group_lp = np.stack(
            [np.logaddexp.reduce(logp[:, a:b], axis=1) for a, b in zip(bounds, bounds[1:])],
            axis=1,
        )
        probs = np.exp(group_lp - group_lp.max(axis=1, keepdims=True))
        out[start : start + len(logp)] = probs / probs.sum(axis=1, keepdims=True)
    return out
