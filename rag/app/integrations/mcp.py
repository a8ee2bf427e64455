"""An MCP server exposing a ragnodes index: ``search``, ``fetch`` and ``ask`` tools, and the
documents as resources.

Run it over stdio (what desktop assistants and agent frameworks launch)::

    rag mcp path/to/index                 # or: python -m rag.app.cli mcp path/to/index

* tools -- ``search(query, k=5, filter=None)`` -> ``SearchResult``; ``fetch(id)`` ->
  ``ToolDocument``; ``ask(question)`` -> ``ToolAnswer`` (whenever the pipeline has a generator:
  ``rag mcp`` gives it the packaged SmolLM2 unless ``--model none``, loaded on the first ask).
  Arguments are the fields of :class:`rag.app.api.SearchArgs` / ``FetchArgs`` / ``AskArgs`` (the
  filter language of :mod:`rag.core.filters`, docs/filters.md); results are structured. Every tool
  is annotated ``readOnlyHint`` / ``idempotentHint`` (nothing is changed),
  ``openWorldHint=False`` (a closed collection).
* resources -- ``ragnodes://documents/{id}`` (a template for any id ``fetch`` accepts: a chunk
  id, or a file's id whose chunks are joined) and, listed, the first ``max_listed_resources``
  documents; each reads as the document's title and text. Ids are percent-encoded in URIs
  (:func:`rag.pipeline.citations.document_uri`: ``pdf/a.pdf#5`` ->
  ``ragnodes://documents/pdf%2Fa.pdf%235``, since ``#`` starts a URI's fragment); an unencoded
  ``/`` is read too.
* errors -- bad input (an empty query, an unknown id, a bad filter, ``ask`` without a generator)
  comes back as a tool result with ``isError`` and ragnodes' one-line message, never as a
  protocol error or a traceback.
* the server reports the installed ``ragnodes`` version in its ``serverInfo``.

Works with the ``mcp`` SDK 2.x (``MCPServer``) and 1.x (``FastMCP``). Needs the ``mcp`` extra
(``pip install "ragnodes[mcp]"``). Protocol: https://modelcontextprotocol.io/specification.
"""

from __future__ import annotations

import functools
from typing import Annotated, Any
from urllib.parse import unquote

from pydantic import Field, ValidationError

from rag.app.api import (
    FILTER_DESCRIPTION,
    FilterJSON,
    SearchResult,
    Text,
    ToolAnswer,
    ToolDocument,
    TopK,
)
from rag.app.integrations.tools import (
    ASK_DESCRIPTION,
    FETCH_DESCRIPTION,
    SEARCH_DESCRIPTION,
    RagTools,
)
from rag.core.errors import RagError
from rag.core.extras import require
from rag.core.filters import parse_filter
from rag.pipeline.citations import DOCUMENT_URI, document_uri

RESOURCE_PREFIX = DOCUMENT_URI
resource_uri = document_uri  # the URI of a document id (rag.pipeline.citations.document_uri)


def _sdk() -> dict[str, Any]:
    """The SDK's server class, tool error, resource class and annotations model (2.x or 1.x)."""
    require("mcp", extra="mcp", feature="the MCP server")
    from mcp.types import ToolAnnotations

    try:
        from mcp.server.mcpserver import MCPServer  # mcp >= 2
        from mcp.server.mcpserver.exceptions import ToolError
        from mcp.server.mcpserver.resources import FunctionResource
        from mcp.server.mcpserver.resources.templates import ResourceSecurity
    except ImportError:
        from mcp.server.fastmcp import FastMCP as MCPServer  # mcp 1.x
        from mcp.server.fastmcp.exceptions import ToolError
        from mcp.server.fastmcp.resources import FunctionResource

        ResourceSecurity = None  # type: ignore[assignment,misc]  # noqa: N806
    return {
        "security": ResourceSecurity,
        "server": MCPServer,
        "error": ToolError,
        "resource": FunctionResource,
        "annotations": ToolAnnotations,
    }


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("ragnodes")
    except PackageNotFoundError:
        return "0"


def _document_text(tools: RagTools, doc_id: str) -> str:
    try:
        doc = tools.fetch(doc_id)
    except RagError:
        if "%" not in doc_id:
            raise
        doc = tools.fetch(unquote(doc_id))  # an SDK that hands the template value undecoded
    return f"{doc.title}\n\n{doc.text}" if doc.title else doc.text


def build_mcp_server(
    pipeline: Any, name: str = "ragnodes", max_listed_resources: int = 1000
) -> Any:
    """An MCP server (not yet running) with ``search``, ``fetch`` and, given a generator,
    ``ask``; documents as resources (the first ``max_listed_resources`` listed)."""
    tools = RagTools(pipeline)
    sdk = _sdk()
    instructions = "Search and question answering over a ragnodes document index."
    try:
        server = sdk["server"](name, instructions=instructions, version=_version())
    except TypeError:  # mcp 1.x: no version argument; set it on the low-level server
        server = sdk["server"](name, instructions=instructions)
        server._mcp_server.version = _version()
    read_only = sdk["annotations"](
        readOnlyHint=True, destructiveHint=False, idempotentHint=True, openWorldHint=False
    )

    def call(fn: Any, *args: Any) -> Any:
        try:
            return fn(*args)
        except (RagError, ValidationError) as e:  # anticipated: the model reads the message
            raise sdk["error"](str(e)) from e

    @server.tool(name="search", description=SEARCH_DESCRIPTION, annotations=read_only)
    def search(
        query: Annotated[Text, Field(description="what to search for")],
        k: Annotated[TopK, Field(description="passages to return")] = 5,
        filter: Annotated[FilterJSON | None, Field(description=FILTER_DESCRIPTION)] = None,
    ) -> SearchResult:
        # parsed here, not by the SDK's argument model: a bad filter is one line, not a dump
        return call(lambda: tools.search(query, k, parse_filter(filter)))

    @server.tool(name="fetch", description=FETCH_DESCRIPTION, annotations=read_only)
    def fetch(  # the argument is named as in the fetch tool of OpenAI's MCP connectors
        id: Annotated[str, Field(min_length=1, description="a document id")],  # noqa: A002
    ) -> ToolDocument:
        return call(tools.fetch, id)

    if tools.can_ask:

        @server.tool(name="ask", description=ASK_DESCRIPTION, annotations=read_only)
        def ask(
            question: Annotated[Text, Field(description="the question")],
            filter: Annotated[FilterJSON | None, Field(description=FILTER_DESCRIPTION)] = None,
        ) -> ToolAnswer:
            return call(lambda: tools.ask(question, parse_filter(filter)))

    template, extra = _template(sdk)

    @server.resource(
        template,
        name="document",
        mime_type="text/plain",
        description="one indexed document (title, then text) by its percent-encoded id",
        **extra,
    )
    def document(doc_id: str) -> str:
        return call(_document_text, tools, doc_id)

    retriever = getattr(tools.pipeline, "retriever", tools.pipeline)
    for i, (doc_id, doc) in enumerate(getattr(retriever, "documents", {}).items()):
        if i >= max_listed_resources:
            break
        server.add_resource(
            sdk["resource"](
                uri=resource_uri(doc_id),
                name=doc_id,
                title=doc.title or None,
                mime_type="text/plain",
                fn=functools.partial(_document_text, tools, doc_id),
            )
        )
    return server


def _template(sdk: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The document template: mcp 2.x matches RFC 6570 ``{+doc_id}`` (a ``/`` in an id may be
    sent unencoded; values are decoded) with its path checks off, since an id is a key looked up
    in the index, never a file path; mcp 1.x matches ``{doc_id}`` (one segment, encoded)."""
    if sdk.get("security") is None:
        return RESOURCE_PREFIX + "{doc_id}", {}
    return RESOURCE_PREFIX + "{+doc_id}", {"security": sdk["security"](exempt_params={"doc_id"})}
