"""Agent tools (LangChain StructuredTool, LlamaIndex FunctionTool) and the MCP server, the latter
through a real MCP client talking to `rag mcp` (`python -m rag.app.cli mcp`) over stdio."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from scripted_generator import ScriptedGenerator

from rag.app.cli import demo_corpus_path
from rag.app.integrations.tools import RagTools, ToolInputError
from rag.core.errors import ConfigError
from rag.index.persist import read_documents
from rag.pipeline import Pipeline
from retrievers import BM25Retriever

ROOT = Path(__file__).resolve().parents[2]
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
    assert answer.citations[0].document_id == top.ids[0]
    assert answer.citations[0].title in answer.answer
    with pytest.raises(ToolInputError, match="query"):  # a ragnodes error, not pydantic's
        tools.search("   ")
    assert tools.fetch("jupiter").title == "Jupiter"
    with pytest.raises(ConfigError, match="no document has id"):
        tools.fetch("no-such-id")
    assert tools.search("planet", k=3, filter={"topic": "geology"}).hits == []
    with pytest.raises(ToolInputError, match="filter"):
        tools.search("planet", filter={"y": {"near": 1}})
    with pytest.raises(ConfigError, match="generator"):
        RagTools(pipe.retriever).ask(QUERY)


def test_langchain_tools(pipe):
    pytest.importorskip("langchain_core")
    search, fetch, ask = RagTools(pipe).as_langchain()
    schema = search.tool_call_schema.model_json_schema()
    assert set(schema["properties"]) == {"query", "k", "filter"} and schema["required"] == ["query"]
    hits = json.loads(search.invoke({"query": QUERY, "k": 2}))["hits"]
    assert [h["id"] for h in hits] == pipe.retriever.retrieve(QUERY, 2).ids
    # called as a model's tool call: the documents come back as the ToolMessage's artifact
    call = {"type": "tool_call", "id": "c1", "name": "search", "args": {"query": QUERY, "k": 2}}
    msg = search.invoke(call)
    assert [d.id for d in msg.artifact] == [h["id"] for h in hits]
    assert msg.artifact[0].metadata["title"] and json.loads(msg.content)["hits"] == hits
    doc = fetch.invoke({**call, "name": "fetch", "args": {"id": hits[0]["id"]}})
    assert doc.artifact[0].page_content == pipe.retriever.documents[hits[0]["id"]].text
    out = json.loads(ask.invoke({"question": QUERY}))
    assert out["citations"][0]["document_id"] == hits[0]["id"]
    # bad input is the tool's output for the model to read, never an exception
    assert "greater than or equal to 1" in search.invoke({"query": QUERY, "k": 0})
    assert "query" in search.invoke({"query": "  "})
    assert "no document has id" in fetch.invoke({"id": "no-such-id"})
    assert [t.name for t in RagTools(pipe.retriever).as_langchain()] == ["search", "fetch"]


def test_llamaindex_tools(pipe):
    pytest.importorskip("llama_index.core")
    search, fetch, ask = RagTools(pipe).as_llamaindex()
    params = search.metadata.get_parameters_dict()
    assert set(params["properties"]) == {"query", "k", "filter"}
    hits = json.loads(search.call(query=QUERY, k=2).content)["hits"]
    assert [h["id"] for h in hits] == pipe.retriever.retrieve(QUERY, 2).ids
    cites = json.loads(ask.call(question=QUERY).content)["citations"]
    assert cites[0]["document_id"] == hits[0]["id"]
    assert json.loads(fetch.call(id="jupiter").content)["title"] == "Jupiter"


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
        args=["-m", "rag.app.cli", "mcp", str(index)],
        cwd=str(ROOT),
        env={"PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"},
    )

    async def session():
        with anyio.fail_after(120):
            async with mcp.stdio_client(params) as (read, write):
                async with mcp.ClientSession(read, write) as s:
                    init = await s.initialize()
                    out = {"init": init, "tools": (await s.list_tools()).tools}
                    out["ok"] = await s.call_tool("search", {"query": QUERY, "k": 3})
                    out["blank"] = await s.call_tool("search", {"query": "  "})
                    out["filtered"] = await s.call_tool(
                        "search", {"query": "planet", "k": 5, "filter": {"topic": "geology"}}
                    )
                    out["bad_filter"] = await s.call_tool(
                        "search", {"query": "planet", "filter": {"topic": {"near": 1}}}
                    )
                    out["fetch"] = await s.call_tool("fetch", {"id": "jupiter"})
                    out["missing"] = await s.call_tool("fetch", {"id": "no-such-id"})
                    out["resources"] = (await s.list_resources()).resources
                    out["read"] = await s.read_resource("ragnodes://documents/saturn")
                    return out

    got = anyio.run(session)
    tools = got["tools"]
    # the packaged default generator offers ask (loaded on the first ask; `--model none`: no ask)
    assert [t.name for t in tools] == ["search", "fetch", "ask"]
    schema = _get(tools[0], "input_schema", "inputSchema")
    assert schema["required"] == ["query"] and schema["properties"]["k"]["maximum"] == 100
    assert "filter" in schema["properties"]
    for t in tools:
        hints = t.annotations
        assert _get(hints, "read_only_hint", "readOnlyHint") is True
        assert _get(hints, "destructive_hint", "destructiveHint") is False
        assert _get(hints, "idempotent_hint", "idempotentHint") is True
    from importlib.metadata import version

    info = _get(got["init"], "server_info", "serverInfo")
    assert info.name == "ragnodes" and info.version == version("ragnodes")
    ok = got["ok"]
    assert not _get(ok, "is_error", "isError")
    hits = _get(ok, "structured_content", "structuredContent")["hits"]
    assert [h["id"] for h in hits] == bm25.retrieve(QUERY, 3).ids
    blank = got["blank"]
    assert _get(blank, "is_error", "isError") and "query" in blank.content[0].text
    assert _get(got["filtered"], "structured_content", "structuredContent")["hits"] == []
    bad = got["bad_filter"]
    assert _get(bad, "is_error", "isError")
    assert "unknown operator 'near'" in bad.content[0].text and "\n" not in bad.content[0].text
    doc = _get(got["fetch"], "structured_content", "structuredContent")
    assert doc["id"] == "jupiter" and doc["text"] == bm25.documents["jupiter"].text
    missing = got["missing"]
    assert _get(missing, "is_error", "isError") and "no document has id" in missing.content[0].text
    uris = {str(r.uri) for r in got["resources"]}
    assert uris == {f"ragnodes://documents/{i}" for i in bm25.documents}
    text = got["read"].contents[0].text
    assert text.startswith("Saturn") and bm25.documents["saturn"].text in text


def test_mcp_ask_cites_in_the_shared_citation_model(pipe):
    """The ``ask`` tool (a pipeline with a generator) through mcp 2.x's in-process client."""
    anyio = pytest.importorskip("anyio")
    mcp = pytest.importorskip("mcp")
    if not hasattr(mcp, "Client"):
        pytest.skip("mcp 1.x has no in-process Client")
    from rag.app.integrations.mcp import build_mcp_server

    async def session():
        async with mcp.Client(build_mcp_server(pipe)) as c:
            names = [t.name for t in (await c.list_tools()).tools]
            return names, await c.call_tool("ask", {"question": QUERY})

    names, out = anyio.run(session)
    assert names == ["search", "fetch", "ask"]
    answer = _get(out, "structured_content", "structuredContent")
    top = pipe.search(QUERY).hits[0]
    from rag.core.types import Citation

    cited = answer["citations"][0]
    assert set(cited) == set(Citation.model_fields)  # the one citation model, every field
    assert {k: cited[k] for k in ("marker", "document_id", "title", "source")} == {
        "marker": 1,
        "document_id": top.id,
        "title": top.document.title,
        "source": "generated",
    }
