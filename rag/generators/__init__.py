"""Generator backends behind one interface (see :class:`rag.core.nodes.Generator` and
:class:`rag.generators.base.BaseGenerator`): transformers (local), vLLM's offline engine (GPU),
any OpenAI-compatible HTTP server, and xRAG's one-token contexts."""

from rag.generators.base import BaseGenerator, Sampling, StopFilter, cut_at_stop
from rag.generators.openai_http import (
    Completion,
    HTTPGeneratorError,
    OpenAICompatibleGenerator,
    ToolCall,
)
from rag.generators.transformers import TransformersGenerator
from rag.generators.vllm import VLLMGenerator
from rag.generators.xrag import XRAGGenerator

__all__ = [
    "BaseGenerator",
    "Completion",
    "HTTPGeneratorError",
    "OpenAICompatibleGenerator",
    "Sampling",
    "StopFilter",
    "ToolCall",
    "TransformersGenerator",
    "VLLMGenerator",
    "XRAGGenerator",
    "cut_at_stop",
]
