"""Agent tools: ``search``, ``fetch`` and ``ask`` over a ragnodes pipeline, with JSON-schema
arguments.

The same two functions are offered to every agent framework: as LangChain ``StructuredTool`` s
(:meth:`RagTools.as_langchain`), LlamaIndex ``FunctionTool`` s (:meth:`RagTools.as_llamaindex`)
and MCP tools (:mod:`rag.app.integrations.mcp`). Arguments are validated by the shared models of
:mod:`rag.app.api` (``SearchArgs``, ``FetchArgs``, ``AskArgs``), whose JSON schemas the frameworks
publish; results are the compact ``SearchResult`` / ``ToolDocument`` / ``ToolAnswer`` (a language
model reads JSON text). Bad arguments (an empty query) and ragnodes errors raise
:class:`ToolInputError` / :class:`~rag.core.errors.RagError` with a message for the model: the
LangChain tools return it as the tool's output (``handle_tool_error``), MCP as a tool error.
The LangChain tools return ``(JSON text, documents)``: ``response_format="content_and_artifact"``,
so an agent's ``ToolMessage.artifact`` holds the LangChain ``Document`` s.

>>> tools = RagTools(Pipeline.open("index"))            # doctest: +SKIP
>>> tools.search("largest planet", k=2).hits[0].id       # doctest: +SKIP
'jupiter'
>>> agent = create_agent(llm, tools.as_langchain())     # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from rag.app.api import (
    AskArgs,
    FetchArgs,
    SearchArgs,
    SearchResult,
    ToolAnswer,
    ToolDocument,
    tool_answer,
    tool_document,
    tool_hits,
)
from rag.core.errors import ConfigError, RagError
from rag.core.extras import require
from rag.core.types import Hit, Query, Ranking
from rag.ingest.frameworks import check_searchable, fetch, search

SEARCH_DESCRIPTION = (
    "Search the indexed documents. Returns the k most relevant passages as JSON "
    "(id, title, text, score), best first."
)
FETCH_DESCRIPTION = (
    "Read one whole document by its id (ids appear in search results). Returns JSON "
    "(id, title, text, metadata)."
)
ASK_DESCRIPTION = (
    "Answer a question from the indexed documents. Returns JSON with the answer and the "
    "citations ([n] markers resolved to document ids)."
)


class ToolInputError(RagError, ValueError):
    """Tool arguments that fail their schema; the message names each bad field."""


def _args(model: type, **values: Any) -> Any:
    """Validate tool arguments with the schema the agent saw; one readable error, not
    pydantic's ``ValidationError``."""
    try:
        return model(**values)
    except ValidationError as e:
        bad = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'arguments'}: {err['msg']}"
            for err in e.errors()
        )
        raise ToolInputError(f"bad {model.__name__} arguments: {bad}") from None


class RagTools:
    """The ``search``, ``fetch`` and ``ask`` tools over one retriever or pipeline.

    Args:
        pipeline: a ragnodes Pipeline (``ask`` needs its generator) or a bare retriever
            (``search`` and ``fetch`` only).
    """

    def __init__(self, pipeline: Any) -> None:
        self.pipeline = check_searchable(pipeline)

    @property
    def can_ask(self) -> bool:
        return getattr(self.pipeline, "generator", None) is not None

    def ranking(self, query: str, k: int = 5, filter: dict | None = None) -> Ranking:
        args = _args(SearchArgs, query=query, k=k, filter=filter)
        return search(self.pipeline, args.query, args.k, args.filter_dict())

    def search(self, query: str, k: int = 5, filter: dict | None = None) -> SearchResult:
        return tool_hits(self.ranking(query, k, filter))

    def fetch(self, id: str) -> ToolDocument:  # noqa: A002 (the tool's argument name)
        return tool_document(fetch(self.pipeline, _args(FetchArgs, id=id).id))

    def ask(self, question: str, filter: dict | None = None) -> ToolAnswer:
        args = _args(AskArgs, question=question, filter=filter)
        if not self.can_ask:
            raise ConfigError("ask needs a pipeline with a generator; only search is available")
        if args.filter is None:
            return tool_answer(self.pipeline.ask(args.question))
        return tool_answer(self.pipeline.ask(args.question, args.filter))

    # JSON text for frameworks that hand tool output to a model as a string
    def search_json(self, query: str, k: int = 5, filter: dict | None = None) -> str:
        return self.search(query, k, filter).model_dump_json()

    def fetch_json(self, id: str) -> str:  # noqa: A002
        return self.fetch(id).model_dump_json()

    def ask_json(self, question: str, filter: dict | None = None) -> str:
        return self.ask(question, filter).model_dump_json()

    def as_langchain(self) -> list[Any]:
        """``[search, fetch, ask]`` as LangChain ``StructuredTool`` s (``ask`` only with a
        generator). ``search`` and ``fetch`` return ``(JSON, [Document])``
        (``response_format="content_and_artifact"``); bad input comes back as the tool output."""
        require("langchain_core", extra="langchain", feature="LangChain tools")
        from langchain_core.tools import StructuredTool

        from rag.app.integrations.langchain import to_documents

        @_as_tool_exception
        def search_artifact(query: str, k: int = 5, filter: dict | None = None) -> Any:
            ranking = self.ranking(query, k, filter)
            return tool_hits(ranking).model_dump_json(), to_documents(ranking)

        @_as_tool_exception
        def fetch_artifact(id: str) -> Any:  # noqa: A002
            doc = fetch(self.pipeline, _args(FetchArgs, id=id).id)
            ranking = Ranking(query=Query(text=doc.id), hits=(Hit(document=doc, score=0.0),))
            return tool_document(doc).model_dump_json(), to_documents(ranking)

        common = {
            "response_format": "content_and_artifact",
            "handle_tool_error": True,  # the model reads ragnodes' message as the output
            "handle_validation_error": _validation_message,
        }
        tools = [
            StructuredTool.from_function(
                func=search_artifact,
                name="search",
                description=SEARCH_DESCRIPTION,
                args_schema=SearchArgs,
                **common,
            ),
            StructuredTool.from_function(
                func=fetch_artifact,
                name="fetch",
                description=FETCH_DESCRIPTION,
                args_schema=FetchArgs,
                **common,
            ),
        ]
        if self.can_ask:
            tools.append(
                StructuredTool.from_function(
                    func=_as_tool_exception(self.ask_json),
                    name="ask",
                    description=ASK_DESCRIPTION,
                    args_schema=AskArgs,
                    handle_tool_error=True,
                    handle_validation_error=_validation_message,
                )
            )
        return tools

    def as_llamaindex(self) -> list[Any]:
        """``[search, fetch, ask]`` as LlamaIndex ``FunctionTool`` s (``ask`` only with a
        generator)."""
        require("llama_index.core", extra="llamaindex", feature="LlamaIndex tools")
        from llama_index.core.tools import FunctionTool

        specs = [
            (self.search_json, "search", SEARCH_DESCRIPTION, SearchArgs),
            (self.fetch_json, "fetch", FETCH_DESCRIPTION, FetchArgs),
        ]
        if self.can_ask:
            specs.append((self.ask_json, "ask", ASK_DESCRIPTION, AskArgs))
        return [
            FunctionTool.from_defaults(fn=fn, name=name, description=desc, fn_schema=schema)
            for fn, name, desc, schema in specs
        ]


def _as_tool_exception(fn: Any) -> Any:
    """LangChain shows a tool's ``ToolException`` to the model (``handle_tool_error``); a
    ragnodes error (an unknown id, no generator, a bad filter) becomes one. Others propagate."""
    import functools

    from langchain_core.tools import ToolException

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except RagError as e:
            raise ToolException(str(e)) from e

    return wrapper


def _validation_message(e: Exception) -> str:
    """Arguments that fail the schema (an empty query): one line for the model."""
    if isinstance(e, ValidationError):
        bad = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'arguments'}: {err['msg']}"
            for err in e.errors()
        )
        return f"bad arguments: {bad}"
    return f"bad arguments: {e}"
