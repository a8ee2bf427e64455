"""The process-wide cache of LLM runtimes: one loaded model per (backend, model, device, dtype
and engine settings), whoever asks -- a generator, an LLM reranker or a judge on the same model
share one set of weights (and, on vLLM, one KV cache) instead of loading it once each.

>>> a = get_llm("transformers", "smollm2-135m")                   # doctest: +SKIP
>>> a is get_llm("transformers", "smollm2-135m", device="auto")   # doctest: +SKIP
True
"""

from __future__ import annotations

import threading
from typing import Any

from rag.core.errors import ConfigError
from rag.core.extras import require
from rag.core.llm.base import pick_backend
from rag.core.llm.hf import TransformersLLM
from rag.core.llm.vllm import VLLMLLM
from rag.core.models import PACKAGED, canonical

LLMRuntime = TransformersLLM | VLLMLLM
_CACHE: dict[tuple[Any, ...], LLMRuntime] = {}
_LOCK = threading.Lock()
VLLM_OPTIONS = ("seed", "dtype", "gpu_memory_utilization", "max_model_len", "enforce_eager")


def _device(device: str) -> str:
    if device != "auto":
        return device
    torch = require("torch", feature="local LLMs")
    return "cuda" if torch.cuda.is_available() else "cpu"


def model_key(model: str) -> str:
    """``model`` as the cache knows it: a packaged model's aliases (``smollm2``,
    ``HuggingFaceTB/SmolLM2-135M-Instruct``) are one model (``smollm2-135m``); any other name or
    path is kept as given."""
    key = canonical(model)
    return key if key in PACKAGED else model


def llm_key(backend: str, model: str, device: str = "auto", **options: Any) -> tuple[Any, ...]:
    """The cache key: ``("transformers", model, device, "float32")`` (``auto`` resolved to the
    device it means) or ``("vllm", model, *engine settings)``, ``model`` by :func:`model_key`.
    ``backend="auto"`` is resolved first (:func:`rag.core.llm.pick_backend`)."""
    model = model_key(model)
    chosen = pick_backend(backend)
    if chosen == "transformers":
        if options:
            raise ConfigError(f"the transformers backend takes no options {sorted(options)}")
        return ("transformers", model, _device(device), "float32")
    unknown = set(options) - set(VLLM_OPTIONS)
    if unknown:
        raise ConfigError(f"unknown vLLM options {sorted(unknown)}; accepted: {VLLM_OPTIONS}")
    defaults = {"seed": 0, "dtype": "auto", "gpu_memory_utilization": 0.5}
    settings = {**defaults, "max_model_len": None, "enforce_eager": None, **options}
    return ("vllm", model, *(settings[k] for k in VLLM_OPTIONS))


def get_llm(backend: str, model: str, device: str = "auto", **options: Any) -> LLMRuntime:
    """The shared runtime for ``model`` on ``backend`` (``auto`` | ``transformers`` | ``vllm``),
    created on first request; call ``.load()`` on it to load the weights (once per process).
    ``device`` is for transformers; ``options`` are :class:`VLLMLLM`'s engine settings."""
    key = llm_key(backend, model, device, **options)
    with _LOCK:
        rt = _CACHE.get(key)
        if rt is None:
            if key[0] == "transformers":
                rt = TransformersLLM(model, key[2])
            else:
                rt = VLLMLLM(model, **dict(zip(VLLM_OPTIONS, key[2:], strict=True)))
            _CACHE[key] = rt
    return rt


def cached_llms() -> dict[tuple[Any, ...], LLMRuntime]:
    """A copy of the cache: key -> runtime (``runtime.loads`` counts its real loads)."""
    with _LOCK:
        return dict(_CACHE)


def forget_llms() -> dict[tuple[Any, ...], LLMRuntime]:
    """Empty the cache (the runtimes stay alive while something holds them); returns what it
    held, which :func:`restore_llms` puts back."""
    with _LOCK:
        held = dict(_CACHE)
        _CACHE.clear()
    return held


def restore_llms(held: dict[tuple[Any, ...], LLMRuntime]) -> None:
    with _LOCK:
        _CACHE.clear()
        _CACHE.update(held)
