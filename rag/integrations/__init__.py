"""Adapters to the frameworks people already use, and agent tools.

Each module imports its framework lazily; without the extra it raises
:class:`~rag.errors.MissingExtraError` naming the install command.

* :mod:`rag.integrations.langchain` -- ``LangChainRetriever`` (a ``langchain_core`` retriever,
  per-call ``k`` and ``filter``), ``LangChainCompressor`` (a document compressor),
  ``index_langchain_documents``; ``RagEmbeddings`` and ``RagChatModel`` (streaming,
  ``bind_tools``) from :mod:`rag.integrations.langchain_models`.
* :mod:`rag.integrations.llamaindex` -- ``LlamaIndexRetriever`` (``MetadataFilters``, nodes keep
  ``ref_doc_id``), ``LlamaIndexPostprocessor``, ``index_llama_nodes``, ``index_llama_documents``;
  ``RagEmbedding`` and ``RagLLM`` from :mod:`rag.integrations.llamaindex_models`.
* :mod:`rag.integrations.filters` -- LangChain filter dicts and LlamaIndex ``MetadataFilters`` in
  ragnodes' filter syntax.
* :mod:`rag.integrations.tools` -- ``RagTools``: ``search``, ``fetch`` and ``ask`` with
  JSON-schema arguments, as LangChain tools (documents as artifacts) or LlamaIndex
  ``FunctionTool`` s.
* :mod:`rag.integrations.mcp` -- an MCP server exposing the same tools and the documents as
  resources over stdio.
"""

from __future__ import annotations

from typing import Any

# name -> module; imported on first use, so `import rag.integrations` needs no framework
_EXPORTS = {
    "LangChainRetriever": "rag.integrations.langchain",
    "LangChainCompressor": "rag.integrations.langchain",
    "RagEmbeddings": "rag.integrations.langchain_models",
    "RagChatModel": "rag.integrations.langchain_models",
    "LlamaIndexRetriever": "rag.integrations.llamaindex",
    "LlamaIndexPostprocessor": "rag.integrations.llamaindex",
    "RagEmbedding": "rag.integrations.llamaindex_models",
    "RagLLM": "rag.integrations.llamaindex_models",
    "RagTools": "rag.integrations.tools",
    "build_mcp_server": "rag.integrations.mcp",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    """``from rag.integrations import LangChainRetriever`` (the framework is imported then)."""
    if name not in _EXPORTS:
        raise AttributeError(f"module 'rag.integrations' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(_EXPORTS[name]), name)
