"""An MCP server exposing the ``search`` and ``ask`` tools of a ragnodes index.

Run it over stdio (what desktop assistants and agent frameworks launch)::

    rag mcp path/to/index                 # or: python -m rag.integrations.mcp path/to/index

Tool arguments are the fields of :class:`rag.api.SearchArgs` / :class:`rag.api.AskArgs`, results
the structured ``SearchResult`` / ``ToolAnswer``. A tool error (an empty query, ``ask`` without a
generator) comes back as an MCP tool error with ragnodes' message. Works with the ``mcp`` SDK 2.x
(``MCPServer``) and 1.x (``FastMCP``). Needs the ``mcp`` extra (``pip install "ragnodes[mcp]"``).
"""

from __future__ import annotations

import argparse
import sys
from typing import Annotated, Any

from pydantic import Field, ValidationError

from rag.api import SearchResult, Text, ToolAnswer, TopK
from rag.errors import RagError
from rag.extras import require
from rag.integrations.tools import ASK_DESCRIPTION, SEARCH_DESCRIPTION, RagTools


def _sdk() -> tuple[Any, type[Exception]]:
    """(server class, the tool error class whose message reaches the client)."""
    require("mcp", extra="mcp", feature="the MCP server")
    try:
        from mcp.server.mcpserver import MCPServer  # mcp >= 2
        from mcp.server.mcpserver.exceptions import ToolError

        return MCPServer, ToolError
    except ImportError:
        from mcp.server.fastmcp import FastMCP  # mcp 1.x
        from mcp.server.fastmcp.exceptions import ToolError

        return FastMCP, ToolError


def build_mcp_server(pipeline: Any, name: str = "ragnodes") -> Any:
    """An MCP server (not yet running) with ``search`` and, given a generator, ``ask``."""
    tools = RagTools(pipeline)
    server_cls, tool_error = _sdk()
    server = server_cls(
        name, instructions="Search and question answering over a ragnodes document index."
    )

    def call(fn: Any, *args: Any) -> Any:
        try:
            return fn(*args)
        except (RagError, ValidationError) as e:  # anticipated: the model reads the message
            raise tool_error(str(e)) from e

    @server.tool(name="search", description=SEARCH_DESCRIPTION)
    def search(
        query: Annotated[Text, Field(description="what to search for")],
        k: Annotated[TopK, Field(description="passages to return")] = 5,
    ) -> SearchResult:
        return call(tools.search, query, k)

    if getattr(tools.pipeline, "generator", None) is not None:

        @server.tool(name="ask", description=ASK_DESCRIPTION)
        def ask(question: Annotated[Text, Field(description="the question")]) -> ToolAnswer:
            return call(tools.ask, question)

    return server


def main(argv: list[str] | None = None) -> int:
    """``python -m rag.integrations.mcp INDEX`` (the same as ``rag mcp INDEX``)."""
    from rag.integrations.cli import add_mcp_args, cmd_mcp

    ap = argparse.ArgumentParser(prog="rag mcp", description="serve an index as MCP tools")
    add_mcp_args(ap)
    return cmd_mcp(ap.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
