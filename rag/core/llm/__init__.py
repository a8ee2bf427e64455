"""One LLM runtime for generators, LLM rerankers and LLM judges: backends (transformers, vLLM;
HTTP for generation only, :mod:`rag.core.llm.http`) behind the operations of
:mod:`rag.core.llm.base`, and a process-wide cache (:func:`get_llm`) so that one model is loaded
once per process whoever uses it."""

from rag.core.llm.base import (
    BACKENDS,
    ScoringLM,
    first_token_ids,
    label_probs,
    pick_backend,
    provenance,
    single_token_ids,
)
from rag.core.llm.cache import LLMRuntime, cached_llms, forget_llms, get_llm, llm_key, restore_llms
from rag.core.llm.hf import TransformersLLM
from rag.core.llm.http import HTTPLLM, HTTPGeneratorError
from rag.core.llm.vllm import VLLMLLM, engine_kwargs, structured_regex

__all__ = [
    "BACKENDS",
    "HTTPLLM",
    "HTTPGeneratorError",
    "LLMRuntime",
    "ScoringLM",
    "TransformersLLM",
    "VLLMLLM",
    "cached_llms",
    "engine_kwargs",
    "first_token_ids",
    "forget_llms",
    "get_llm",
    "label_probs",
    "llm_key",
    "pick_backend",
    "provenance",
    "restore_llms",
    "single_token_ids",
    "structured_regex",
]
