"""Agent tools: ``search`` and ``ask`` over a ragnodes pipeline, with JSON-schema arguments.

The same two functions are offered to every agent framework: as LangChain ``StructuredTool`` s
(:meth:`RagTools.as_langchain`), LlamaIndex ``FunctionTool`` s (:meth:`RagTools.as_llamaindex`)
and MCP tools (:mod:`rag.integrations.mcp`). Arguments are validated by the shared models of
:mod:`rag.api` (``SearchArgs``, ``AskArgs``), whose JSON schemas the frameworks publish; results
are the compact ``SearchResult`` / ``ToolAnswer`` (a language model reads JSON text).

>>> tools = RagTools(Pipeline.open("index"))            # doctest: +SKIP
>>> tools.search("largest planet", k=2).hits[0].id       # doctest: +SKIP
'jupiter'
>>> agent = create_agent(llm, tools.as_langchain())     # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any

from rag.api import AskArgs, SearchArgs, SearchResult, ToolAnswer, tool_answer, tool_hits
from rag.errors import ConfigError
from rag.extras import require
from rag.integrations._common import check_searchable, search

SEARCH_DESCRIPTION = (
    "Search the indexed documents. Returns the k most relevant passages as JSON "
    "(id, title, text, score), best first."
)
ASK_DESCRIPTION = (
    "Answer a question from the indexed documents. Returns JSON with the answer and the "
    "citations ([n] markers resolved to document ids)."
)


class RagTools:
    """The ``search`` and ``ask`` tools over one retriever or pipeline.

    Args:
        pipeline: a ragnodes Pipeline (``ask`` needs its generator) or a bare retriever
            (``search`` only).
    """

    def __init__(self, pipeline: Any) -> None:
        self.pipeline = check_searchable(pipeline)

    def search(self, query: str, k: int = 5) -> SearchResult:
        args = SearchArgs(query=query, k=k)  # the schema the agent saw is the one enforced
        return tool_hits(search(self.pipeline, args.query, args.k))

    def ask(self, question: str) -> ToolAnswer:
        args = AskArgs(question=question)
        if getattr(self.pipeline, "generator", None) is None:
            raise ConfigError("ask needs a pipeline with a generator; only search is available")
        return tool_answer(self.pipeline.ask(args.question))

    # JSON text for frameworks that hand tool output to a model as a string
    def search_json(self, query: str, k: int = 5) -> str:
        return self.search(query, k).model_dump_json()

    def ask_json(self, question: str) -> str:
        return self.ask(question).model_dump_json()

    def as_langchain(self) -> list[Any]:
        """``[search, ask]`` as LangChain ``StructuredTool`` s (``ask`` only with a generator)."""
        require("langchain_core", extra="langchain", feature="LangChain tools")
        from langchain_core.tools import StructuredTool

        tools = [
            StructuredTool.from_function(
                func=self.search_json,
                name="search",
                description=SEARCH_DESCRIPTION,
                args_schema=SearchArgs,
            )
        ]
        if getattr(self.pipeline, "generator", None) is not None:
            tools.append(
                StructuredTool.from_function(
                    func=self.ask_json, name="ask", description=ASK_DESCRIPTION, args_schema=AskArgs
                )
            )
        return tools

    def as_llamaindex(self) -> list[Any]:
        """``[search, ask]`` as LlamaIndex ``FunctionTool`` s (``ask`` only with a generator)."""
        require("llama_index.core", extra="llamaindex", feature="LlamaIndex tools")
        from llama_index.core.tools import FunctionTool

        tools = [
            FunctionTool.from_defaults(
                fn=self.search_json,
                name="search",
                description=SEARCH_DESCRIPTION,
                fn_schema=SearchArgs,
            )
        ]
        if getattr(self.pipeline, "generator", None) is not None:
            tools.append(
                FunctionTool.from_defaults(
                    fn=self.ask_json, name="ask", description=ASK_DESCRIPTION, fn_schema=AskArgs
                )
            )
        return tools
