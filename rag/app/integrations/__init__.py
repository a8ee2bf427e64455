"""Adapters to the frameworks people already use, and agent tools.

Each module imports its framework lazily; without the extra it raises
:class:`~rag.core.errors.MissingExtraError` naming the install command.

* :mod:`rag.app.integrations.langchain` -- ``LangChainRetriever`` (a ``langchain_core`` retriever,
  per-call ``k`` and ``filter``), ``LangChainCompressor`` (a document compressor),
  ``index_langchain_documents``; ``RagEmbeddings`` and ``RagChatModel`` (streaming,
  ``bind_tools``) from :mod:`rag.app.integrations.langchain_models`.
* :mod:`rag.app.integrations.llamaindex` -- ``LlamaIndexRetriever`` (``MetadataFilters``, nodes keep
  ``ref_doc_id``), ``LlamaIndexPostprocessor``, ``index_llama_nodes``, ``index_llama_documents``;
  ``RagEmbedding`` and ``RagLLM`` from :mod:`rag.app.integrations.llamaindex_models`.
* :mod:`rag.app.integrations.filters` -- LangChain filter dicts and LlamaIndex ``MetadataFilters``
  in ragnodes' filter syntax.
* :mod:`rag.app.integrations.tools` -- ``RagTools``: ``search``, ``fetch`` and ``ask`` with
  JSON-schema arguments, as LangChain tools (documents as artifacts) or LlamaIndex
  ``FunctionTool`` s.
* :mod:`rag.app.integrations.mcp` -- an MCP server exposing the same tools and the documents as
  resources over stdio.
"""

from __future__ import annotations

from typing import Any

# name -> module; imported on first use, so `import rag.app.integrations` needs no framework
_EXPORTS = {
    "LangChainRetriever": "rag.app.integrations.langchain",
    "LangChainCompressor": "rag.app.integrations.langchain",
    "RagEmbeddings": "rag.app.integrations.langchain_models",
    "RagChatModel": "rag.app.integrations.langchain_models",
    "LlamaIndexRetriever": "rag.app.integrations.llamaindex",
    "LlamaIndexPostprocessor": "rag.app.integrations.llamaindex",
    "RagEmbedding": "rag.app.integrations.llamaindex_models",
    "RagLLM": "rag.app.integrations.llamaindex_models",
    "RagTools": "rag.app.integrations.tools",
    "build_mcp_server": "rag.app.integrations.mcp",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    """``from rag.app.integrations import LangChainRetriever`` (the framework is imported then)."""
    if name not in _EXPORTS:
        raise AttributeError(f"module 'rag.app.integrations' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(_EXPORTS[name]), name)
