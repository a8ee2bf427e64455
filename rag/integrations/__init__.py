"""Adapters to the frameworks people already use, and agent tools.

Each module imports its framework lazily; without the extra it raises
:class:`~rag.errors.MissingExtraError` naming the install command.

* :mod:`rag.integrations.langchain` -- ``LangChainRetriever`` (a ``langchain_core`` retriever),
  ``LangChainCompressor`` (a document compressor), ``index_langchain_documents``.
* :mod:`rag.integrations.llamaindex` -- ``LlamaIndexRetriever``, ``LlamaIndexPostprocessor``,
  ``index_llama_nodes``, ``index_llama_documents``.
* :mod:`rag.integrations.tools` -- ``RagTools``: ``search`` and ``ask`` with JSON-schema
  arguments, as LangChain tools or LlamaIndex ``FunctionTool`` s.
* :mod:`rag.integrations.mcp` -- an MCP server exposing the same tools over stdio.
"""
