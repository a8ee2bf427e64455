"""Agent tools (LangChain StructuredTool, LlamaIndex FunctionTool) and the MCP server, the latter
through a real MCP client talking to `python -m rag.integrations.mcp` over stdio."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError
from scripted_generator import ScriptedGenerator

from rag.cli import demo_corpus_path
from rag.errors import ConfigError
from rag.integrations.tools import RagTools
from rag.persist import read_documents
from rag.pipeline import Pipeline
from retrievers import BM25Retriever

ROOT = Path(__file__).resolve().parents[1]
QUERY = "Which planet is the largest in the Solar System?"


@pytest.fixture(scope="module")
def pipe():
    bm25 = BM25Retriever().index(read_documents(demo_corpus_path()))
    return Pipeline(retriever=bm25, generator=ScriptedGenerator(), k=3)


def test_tools_search_and_ask(pipe):
    tools = RagTools(pipe)
    assert [h.id for h in tools.search(QUERY, k=3).hits] == pipe.retriever.retrieve(QUERY, 3).ids
    answer = tools.ask(QUERY)
    top = pipe.search(QUERY)
    assert answer.citations[0].id == top.ids[0]
    assert answer.citations[0].title in answer.answer
    with pytest.raises(ValidationError):
        tools.search("   ")
    with pytest.raises(ConfigError, match="generator"):
        RagTools(pipe.retriever).ask(QUERY)


def test_langchain_tools(pipe):
    pytest.importorskip("langchain_core")
    search, ask = RagTools(pipe).as_langchain()
    schema = search.tool_call_schema.model_json_schema()
    assert set(schema["properties"]) == {"query", "k"} and schema["required"] == ["query"]
    hits = json.loads(search.invoke({"query": QUERY, "k": 2}))["hits"]
    assert [h["id"] for h in hits] == pipe.retriever.retrieve(QUERY, 2).ids
    out = json.loads(ask.invoke({"question": QUERY}))
    assert out["citations"][0]["id"] == hits[0]["id"]
    with pytest.raises(ValidationError):
        search.invoke({"query": QUERY, "k": 0})
    assert [t.name for t in RagTools(pipe.retriever).as_langchain()] == ["search"]


def test_llamaindex_tools(pipe):
    pytest.importorskip("llama_index.core")
    search, ask = RagTools(pipe).as_llamaindex()
    params = search.metadata.get_parameters_dict()
    assert set(params["properties"]) == {"query", "k"}
    hits = json.loads(search.call(query=QUERY, k=2).content)["hits"]
    assert [h["id"] for h in hits] == pipe.retriever.retrieve(QUERY, 2).ids
    assert json.loads(ask.call(question=QUERY).content)["citations"][0]["id"] == hits[0]["id"]


def _get(obj, snake: str, camel: str):
    """mcp 2.x names result fields in snake_case, 1.x in camelCase."""
    return getattr(obj, snake) if hasattr(obj, snake) else getattr(obj, camel)


def test_mcp_server_over_stdio(tmp_path):
    anyio = pytest.importorskip("anyio")
    mcp = pytest.importorskip("mcp")
    index = tmp_path / "index"
    bm25 = BM25Retriever().index(read_documents(demo_corpus_path()))
    Pipeline(retriever=bm25).save(index)
    params = mcp.StdioServerParameters(
        command=sys.executable,
        args=["-m", "rag.integrations.mcp", str(index)],
        cwd=str(ROOT),
        env={"PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"},
    )

    async def session():
        with anyio.fail_after(120):
            async with mcp.stdio_client(params) as (read, write):
                async with mcp.ClientSession(read, write) as s:
                    await s.initialize()
                    tools = (await s.list_tools()).tools
                    ok = await s.call_tool("search", {"query": QUERY, "k": 3})
                    blank = await s.call_tool("search", {"query": "  "})
                    return tools, ok, blank

    tools, ok, blank = anyio.run(session)
    assert [t.name for t in tools] == ["search"]  # no generator: no ask tool
    schema = _get(tools[0], "input_schema", "inputSchema")
    assert schema["required"] == ["query"] and schema["properties"]["k"]["maximum"] == 100
    assert not _get(ok, "is_error", "isError")
    hits = _get(ok, "structured_content", "structuredContent")["hits"]
    assert [h["id"] for h in hits] == bm25.retrieve(QUERY, 3).ids
    assert _get(blank, "is_error", "isError") and "query" in blank.content[0].text
