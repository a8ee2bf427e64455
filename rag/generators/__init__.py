"""Generator backends behind one interface (see :class:`rag.nodes.Generator`): transformers
(local), vLLM's offline engine (GPU), and any OpenAI-compatible HTTP server."""

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
    "Completion",
    "HTTPGeneratorError",
    "OpenAICompatibleGenerator",
    "ToolCall",
    "TransformersGenerator",
    "VLLMGenerator",
    "XRAGGenerator",
]
