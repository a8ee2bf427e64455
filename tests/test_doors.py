"""The same answer through every door: one folder index (Markdown, text with a Setext heading,
HTML, CSV, a PDF written by fpdf2), one pipeline, one uvicorn server per module; each channel is
driven by its real client and must show the same citation (path, span, page or heading) and the
same filtered results: the Python API, HTTP (/search, /ask, /chat via httpx), the openai SDK
(the ``ragnodes`` extension, ``url_citation`` annotations, the ``ragnodes+sources`` content
block), langchain-openai ``ChatOpenAI`` and ``OpenAIEmbeddings`` with default settings, LlamaIndex
``OpenAILike``, the mcp client, the LangChain and LlamaIndex adapters, and the CLI.

The generator is :class:`ScriptedGenerator` (it cites ``[1]``): the doors are under test, not a
language model, and a fixed marker makes "the same citation" a sharp check."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from ingest_fixtures import HTML, MD, write_pdf
from scripted_generator import ScriptedGenerator
from server_procs import serving

from rag.citations import document_uri, locate
from rag.cli import main

httpx = pytest.importorskip("httpx")
uvicorn = pytest.importorskip("uvicorn")
openai = pytest.importorskip("openai")

KEY = "doors-test-key-0123"
QUESTION = "When did Apollo 11 land on the Moon?"
TXT = """Saturn notes
============

Saturn has 146 known moons. Titan, its largest moon, has a thick nitrogen atmosphere.
"""
CSV = (
    "id,text,topic\n"
    "c1,Phobos and Deimos are the two moons of Mars.,moons\n"
    ",A row without an id is skipped with a warning.,broken\n"
    "c3,Europa may hide an ocean under its ice.,moons\n"
    "c4,The Kuiper belt lies beyond Neptune.,belts\n"
)
# the filters every door must apply alike, with the predicate they mean
FILTERS = [
    ({"format": "pdf"}, lambda m: m.get("format") == "pdf"),
    ({"format": {"$in": ["md", "txt"]}}, lambda m: m.get("format") in ("md", "txt")),
    ({"format": {"$nin": ["pdf", "csv"]}}, lambda m: m.get("format") not in ("pdf", "csv")),
    ({"page": {"$gte": 2}}, lambda m: (m.get("page") or 0) >= 2),
    ({"page": {"$exists": True}}, lambda m: m.get("page") is not None),
    (
        {"$or": [{"format": "html"}, {"topic": "moons"}]},
        lambda m: m.get("format") == "html" or m.get("topic") == "moons",
    ),
    ({"$not": {"format": {"$ne": "csv"}}}, lambda m: m.get("format") == "csv"),
    (
        {"$and": [{"format": "csv"}, {"row": {"lt": 3}}]},
        lambda m: m.get("format") == "csv" and m.get("row", 99) < 3,
    ),
]
BAD_FILTER = {"format": {"$regex": "p.f"}}
K = 20  # more than the index holds: a filter's whole match set comes back




@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("doors")
    notes = root / "notes"
    (notes / "sub").mkdir(parents=True)
    (notes / "planets.md").write_text(MD, encoding="utf-8")
    (notes / "telescopes.html").write_text(HTML, encoding="utf-8")
    (notes / "sub" / "saturn.txt").write_text(TXT, encoding="utf-8")
    (notes / "facts.csv").write_text(CSV, encoding="utf-8")
    write_pdf(
        notes / "moon.pdf",
        [
            "The Moon is Earth's only natural satellite. It is the fifth largest moon in the "
            "Solar System and the largest relative to the size of its planet; its surface is "
            "covered by regolith, dust and rock from impacts.",
            "Apollo 11 landed on the Moon in July 1969; Neil Armstrong first walked on it.",
        ],
    )
    return root


@pytest.fixture(scope="module")
def indexed(folder, minilm):
    """The index folder (BM25 + MiniLM, chunks of at most 48 tokens, so each PDF page is its
    own chunk) and the progress and warning lines its indexing wrote (`rag index`'s)."""
    import io

    from rag.ingest.context import ChunkContext
    from rag.ingest.indexing import IngestSettings, index_paths
    from rag.ingest.loaders import CsvColumns
    from rag.ingest.progress import IndexProgress
    from rag.pipeline import Pipeline
    from retrievers import BM25Retriever, DenseRetriever, HybridRetriever

    def new():
        hybrid = HybridRetriever([BM25Retriever(), DenseRetriever(encoder=minilm)])
        return Pipeline(retriever=hybrid, max_source_chars=4000, context=ChunkContext(neighbours=0))

    cwd, err = os.getcwd(), io.StringIO()
    os.chdir(folder)  # sources are recorded as given: notes/...
    try:
        settings = IngestSettings(
            chunk_size=48,
            csv_columns=CsvColumns.parse("text=text;id=id"),
            warn=lambda line: print(f"warning: {line}", file=err),
        )
        index_paths(["notes"], "idx", new, settings, monitor=IndexProgress(stream=err, tty=False))
    finally:
        os.chdir(cwd)
    return folder / "idx", err.getvalue()


@pytest.fixture(scope="module")
def index(indexed):
    return indexed[0]


@pytest.fixture(scope="module")
def pipe(index):
    from rag.pipeline import Pipeline

    p = Pipeline.open(index)
    p.generator = ScriptedGenerator()
    p.k = 2
    return p


@pytest.fixture(scope="module")
def base(pipe):
    from rag.server import create_app

    with serving(create_app(pipe, api_keys=[KEY])) as url:
        yield url


@pytest.fixture(scope="module")
def http(base):
    with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {KEY}"}) as c:
        yield c


@pytest.fixture(scope="module")
def reference(pipe):
    """The citation every door must show: the Python API's."""
    answer = pipe.ask(QUESTION)
    (cite,) = [c for c in answer.citations if c.marker == 1]
    return cite


def where(c) -> dict:
    """The fields a citation must agree on (a dict from JSON or a Citation)."""
    d = c if isinstance(c, dict) else c.model_dump(mode="json")
    span = d.get("span")
    return {
        "document_id": d["document_id"],
        "path": d["path"],
        "span": list(span) if span is not None else None,
        "page": d["page"],
        "heading": d["heading"],
    }


# -- the files ------------------------------------------------------------------------------------
def test_the_folder_index_cites_the_pdf_page_and_warns_about_the_csv_row(indexed, reference):
    err = indexed[1]
    assert "skipped row notes/facts.csv:3: blank 'id' cell" in err  # file:line, not an abort
    assert "indexing: 5/5 files read" in err  # the progress line of a non-terminal run
    # the context node merged the PDF's two adjacent chunks: the span covers both pages and
    # the page is where it starts
    assert reference.document_id == "moon.pdf#0+moon.pdf#1"
    assert reference.path == "notes/moon.pdf" and reference.page == 1
    assert reference.span is not None and reference.locator == "notes/moon.pdf:1"


def test_setext_heading_is_a_heading(pipe):
    hit = pipe.search("Titan nitrogen atmosphere", k=1).hits[0]
    assert hit.document.metadata["headings"] == ["Saturn notes"]
    assert locate(hit.document)["heading"] == "Saturn notes"


# -- citations ------------------------------------------------------------------------------------
def test_http_ask_and_chat_cite_the_same(http, reference):
    ask = http.post("/ask", json={"question": QUESTION}).json()
    assert where(ask["citations"][0]) == where(reference)
    chat = http.post("/chat", json={"message": QUESTION}).json()
    assert where(chat["citations"][0]) == where(reference)
    # an answer's sources filtered like a search's
    csv_only = http.post("/ask", json={"question": QUESTION, "filter": {"format": "csv"}}).json()
    assert {c["path"] for c in csv_only["citations"]} == {"notes/facts.csv"}


def test_openai_sdk_extension_annotations_and_sources_block(base, reference):
    client = openai.OpenAI(base_url=base + "/v1", api_key=KEY, max_retries=0)
    assert [m.id for m in client.models.list().data] == ["ragnodes", "ragnodes+sources"]
    user = [{"role": "user", "content": QUESTION}]
    r = client.chat.completions.create(model="ragnodes", messages=user)
    assert where(r.ragnodes["citations"][0]) == where(reference)
    src = r.ragnodes["sources"][0]
    assert (src["path"], src["page"]) == (reference.path, reference.page)
    text = r.choices[0].message.content
    assert "Sources:" not in text  # only on request
    (note,) = r.choices[0].message.annotations
    assert note.type == "url_citation"
    assert note.url_citation.url == document_uri(reference.document_id)
    assert text[note.url_citation.start_index : note.url_citation.end_index] == "[1]"
    assert note.url_citation.title == reference.locator
    # what an unmodified client shows: the content, with the sources at its end
    r = client.chat.completions.create(model="ragnodes+sources", messages=user)
    assert r.choices[0].message.content.endswith(f"Sources:\n[1] {reference.locator}")
    stream = client.chat.completions.create(model="ragnodes+sources", messages=user, stream=True)
    chunks = list(stream)
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert streamed.strip() == r.choices[0].message.content
    last = [c for c in chunks if c.choices][-1]
    assert where(last.ragnodes["citations"][0]) == where(reference)


def test_langchain_chat_openai_keeps_the_citation(base, reference):
    lc = pytest.importorskip("langchain_openai")
    llm = lc.ChatOpenAI(
        model="ragnodes+sources", base_url=base + "/v1", api_key=KEY, include_response_headers=True
    )
    msg = llm.invoke(QUESTION)
    assert msg.content.endswith(f"[1] {reference.locator}")
    cites = json.loads(msg.response_metadata["headers"]["x-ragnodes-citations"])
    assert where(cites[0]) == where(reference)
    streamed = "".join(c.content for c in llm.stream(QUESTION))
    assert streamed.strip() == msg.content


def test_llamaindex_openai_like_shows_the_sources(base, reference):
    ol = pytest.importorskip("llama_index.llms.openai_like")
    from llama_index.core.llms import ChatMessage

    llm = ol.OpenAILike(
        model="ragnodes+sources", api_base=base + "/v1", api_key=KEY, is_chat_model=True
    )
    out = llm.chat([ChatMessage(role="user", content=QUESTION)])
    assert out.message.content.endswith(f"[1] {reference.locator}")


def test_mcp_ask_and_resources(pipe, reference):
    anyio = pytest.importorskip("anyio")
    mcp = pytest.importorskip("mcp")
    if not hasattr(mcp, "Client"):
        pytest.skip("mcp 1.x has no in-process Client")
    from rag.integrations.mcp import build_mcp_server

    file_id = reference.document_id.split("#")[0]

    async def session():
        async with mcp.Client(build_mcp_server(pipe)) as c:
            out = {"ask": await c.call_tool("ask", {"question": QUESTION})}
            out["uris"] = [str(r.uri) for r in (await c.list_resources()).resources]
            out["chunk"] = await c.read_resource(document_uri(reference.document_id))
            out["file"] = await c.read_resource(document_uri(file_id))
            out["raw"] = await c.read_resource("ragnodes://documents/sub/saturn.txt")
            out["bad"] = await c.call_tool("search", {"query": "moon", "filter": BAD_FILTER})
            out["csv"] = await c.call_tool(
                "ask", {"question": QUESTION, "filter": {"format": "csv"}}
            )
            return out

    got = anyio.run(session)
    answer = got["ask"].structured_content
    assert where(answer["citations"][0]) == where(reference)
    assert all("#" not in u.removeprefix("ragnodes://documents/") for u in got["uris"])
    assert document_uri("moon.pdf#1") in got["uris"]  # listed chunks, percent-encoded
    assert "Apollo 11" in got["chunk"].contents[0].text
    assert "Apollo 11" in got["file"].contents[0].text  # a file id that fetch accepts
    assert "146 known moons" in got["raw"].contents[0].text  # an unencoded '/' is read too
    csv_cites = got["csv"].structured_content["citations"]
    assert {c["path"] for c in csv_cites} == {"notes/facts.csv"}
    bad = got["bad"]
    assert bad.is_error and "unknown operator '$regex'" in bad.content[0].text
    assert "\n" not in bad.content[0].text


def test_adapters_carry_the_location(pipe):
    pytest.importorskip("langchain_core")
    pytest.importorskip("llama_index.core")
    from rag.integrations import LangChainRetriever, LlamaIndexRetriever

    top = pipe.search(QUESTION, k=1).hits[0]
    want = locate(top.document)
    (doc,) = LangChainRetriever(pipe, k=1).invoke(QUESTION)  # positional, as LlamaIndex's
    assert doc.id == top.id
    got = {k: doc.metadata[k] for k in ("path", "span", "page", "heading")}
    assert got == {**want, "span": list(want["span"])}
    (node,) = LlamaIndexRetriever(pipe, k=1).retrieve(QUESTION)
    assert node.node.ref_doc_id == top.document.metadata["parent_id"] == "moon.pdf"
    assert node.node.metadata["path"] == want["path"] and node.node.metadata["page"] == 2


def test_rag_chat_prints_paths(pipe, reference):
    import io

    from rag.chat import ChatEngine
    from rag.chat_cli import _turn

    out = io.StringIO()
    _turn(ChatEngine(pipe), QUESTION, out)
    assert f"cited: [1] {reference.locator}" in out.getvalue()


# -- filters --------------------------------------------------------------------------------------
def _lc_filter(pipe, flt):
    from rag.integrations import LangChainRetriever

    return [d.id for d in LangChainRetriever(pipe, k=K).invoke(QUESTION, filter=flt)]


def _li_filter(pipe, flt):
    from rag.integrations import LlamaIndexRetriever

    return [n.node.node_id for n in LlamaIndexRetriever(pipe, K, filter=flt).retrieve(QUESTION)]


def _mcp_filter(pipe, flt):
    anyio = pytest.importorskip("anyio")
    mcp = pytest.importorskip("mcp")
    from rag.integrations.mcp import build_mcp_server

    async def go():
        async with mcp.Client(build_mcp_server(pipe)) as c:
            r = await c.call_tool("search", {"query": QUESTION, "k": K, "filter": flt})
            return [h["id"] for h in r.structured_content["hits"]]

    return anyio.run(go)


def _cli_filter(index, flt, capsys):
    assert main(["search", str(index), QUESTION, "-k", str(K), "--json",
                 "--filter", json.dumps(flt)]) == 0
    return [h["id"] for h in json.loads(capsys.readouterr().out)]


DOORS = ["python", "http", "openai", "mcp", "cli", "langchain", "llamaindex"]


@pytest.mark.parametrize("door", DOORS)
def test_one_filter_language_through_every_door(door, pipe, index, http, base, capsys):
    for flt, pred in FILTERS:
        want = pipe.search(QUESTION, k=K, filter=flt)
        assert want.hits, flt
        assert all(pred(h.document.metadata) for h in want.hits), flt
        everything = pipe.search(QUESTION, k=K).hits
        assert {h.id for h in want.hits} == {
            h.id for h in everything if pred(h.document.metadata)
        }, flt
        if door == "python":
            got = want.ids
        elif door == "http":
            got = [h["document"]["id"] for h in
                   http.post("/search", json={"query": QUESTION, "k": K, "filter": flt})
                   .json()["hits"]]
        elif door == "openai":
            body = {"model": "ragnodes", "messages": [{"role": "user", "content": QUESTION}],
                    "ragnodes": {"k": K, "filter": flt}}
            ext = http.post("/v1/chat/completions", json=body).json()["ragnodes"]
            got = [s["document_id"] for s in ext["sources"]]
            # the answer's sources are the filtered hits, after the context node merged them
            assert {g.split("#")[0] for g in got} <= {i.split("#")[0] for i in want.ids}
            continue
        elif door == "mcp":
            got = _mcp_filter(pipe, flt)
        elif door == "cli":
            got = _cli_filter(index, flt, capsys)
        elif door == "langchain":
            got = _lc_filter(pipe, flt)
        else:
            got = _li_filter(pipe, flt)
        assert set(got) == set(want.ids), (door, flt)


@pytest.mark.parametrize("door", DOORS)
def test_an_unknown_operator_is_one_line_everywhere(door, pipe, index, http, capsys):
    from rag.errors import ConfigError

    if door == "python":
        with pytest.raises(ConfigError, match=r"unknown operator '\$regex'"):
            pipe.search(QUESTION, filter=BAD_FILTER)
        return
    if door in ("http", "openai"):
        path, body = (
            ("/search", {"query": QUESTION, "filter": BAD_FILTER})
            if door == "http"
            else ("/v1/chat/completions", {
                "messages": [{"role": "user", "content": QUESTION}],
                "ragnodes": {"filter": BAD_FILTER}})
        )
        r = http.post(path, json=body)
        assert r.status_code == 422
        msg = r.json()["message"] if door == "http" else r.json()["error"]["message"]
        assert "unknown operator '$regex'" in msg and "\n" not in msg
        return
    if door == "cli":
        rc = main(["search", str(index), QUESTION, "--filter", json.dumps(BAD_FILTER)])
        err = capsys.readouterr().err.strip()
        assert rc == 2 and "unknown operator '$regex'" in err and "\n" not in err
        return
    if door == "mcp":
        pytest.skip("checked with the ask tool in test_mcp_ask_and_resources")
    with pytest.raises(ConfigError, match=r"unknown operator '\$regex'"):
        (_lc_filter if door == "langchain" else _li_filter)(pipe, BAD_FILTER)


def test_llamaindex_metadata_filters_mean_the_same(pipe):
    pytest.importorskip("llama_index.core")
    from llama_index.core.vector_stores import (
        FilterCondition,
        FilterOperator,
        MetadataFilter,
        MetadataFilters,
    )

    from rag.integrations import LlamaIndexRetriever

    native = MetadataFilters(
        filters=[
            MetadataFilter(key="format", value="html", operator=FilterOperator.EQ),
            MetadataFilter(key="topic", value=["moons"], operator=FilterOperator.IN),
        ],
        condition=FilterCondition.OR,
    )
    got = {n.node.node_id for n in LlamaIndexRetriever(pipe, K, filters=native).retrieve(QUESTION)}
    assert got == set(pipe.search(QUESTION, k=K, filter=FILTERS[5][0]).ids)


# -- embeddings -----------------------------------------------------------------------------------
def _tiktoken_cache(monkeypatch) -> None:
    """tiktoken downloads its encodings; LlamaIndex ships cl100k_base: use it offline."""
    core = pytest.importorskip("llama_index.core")
    cache = Path(core.__file__).parent / "_static" / "tiktoken_cache"
    if not cache.is_dir():
        pytest.skip("no offline tiktoken encoding")
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(cache))


def test_openai_embeddings_with_default_settings(base, pipe, monkeypatch):
    lc = pytest.importorskip("langchain_openai")
    _tiktoken_cache(monkeypatch)
    import numpy as np

    from rag.integrations._common import find_encoder

    emb = lc.OpenAIEmbeddings(base_url=base + "/v1", api_key=KEY)  # token ids, by default
    got = np.asarray(emb.embed_query(QUESTION))
    want = np.asarray(find_encoder(pipe).encode([QUESTION], kind="document")[0])
    want = want / np.linalg.norm(want)
    # the same text embedded twice by one model on one machine: float32 noise of a 384-long sum
    assert got.shape == want.shape and float(got @ want) == pytest.approx(1.0, abs=1e-5)
    docs = emb.embed_documents(["Apollo 11", "Titan"])
    assert len(docs) == 2 and float(np.asarray(docs[0]) @ np.asarray(docs[1])) < 0.99


def test_llamaindex_openai_embedding(base, pipe):
    oe = pytest.importorskip("llama_index.embeddings.openai")
    import numpy as np

    from rag.integrations._common import find_encoder

    emb = oe.OpenAIEmbedding(api_base=base + "/v1", api_key=KEY)
    got = np.asarray(emb.get_text_embedding(QUESTION))
    want = np.asarray(find_encoder(pipe).encode([QUESTION], kind="document")[0])
    assert float(got @ want) / float(np.linalg.norm(got) * np.linalg.norm(want)) == (
        pytest.approx(1.0, abs=1e-5)
    )


def test_token_ids_without_tiktoken_name_the_fix(http, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "tiktoken", None)  # the server without tiktoken
    r = http.post("/v1/embeddings", json={"input": [[9906, 1917]], "model": "x"})
    assert r.status_code == 422
    msg = r.json()["error"]["message"]
    assert "check_embedding_ctx_length=False" in msg and "\n" not in msg
