"""The `openai` Python SDK (sync, async, streaming) against `rag serve`'s /v1 routes on a real
uvicorn server on 127.0.0.1: BM25 over the demo corpus answered by SmolLM2-135M (few tokens), and
a MiniLM dense index for /v1/embeddings. Tool calls go through the same server, from the SDK and
from ragnodes' own agent (`OpenAICompatibleGenerator(native_tools=True)`, and `rag chat --agent
--native-tools` in a subprocess). Nothing of ragnodes is mocked; one server per index per module."""

from __future__ import annotations

import asyncio
import base64
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from server_procs import serving as _serving

openai = pytest.importorskip("openai")
uvicorn = pytest.importorskip("uvicorn")

from rag.app.cli import demo_corpus_path  # noqa: E402
from rag.app.server import create_app  # noqa: E402
from rag.index.persist import read_documents  # noqa: E402
from rag.pipeline import Pipeline  # noqa: E402
from retrievers import BM25Retriever  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
KEY = "openai-test-key-0123"
QUESTION = "Which planet has the Great Red Spot?"
USER = [{"role": "user", "content": QUESTION}]
TOKENS = 8  # keep SmolLM2 cheap: the server, not the model, is under test



def serving(app):  # the shared in-process server (server_procs), at its /v1 routes
    return _serving(app, "/v1")


@pytest.fixture(scope="module")
def pipe(smollm):
    bm25 = BM25Retriever().index(read_documents(demo_corpus_path()))
    return Pipeline(retriever=bm25, generator=smollm, k=2)


@pytest.fixture(scope="module")
def base_url(pipe):
    with serving(create_app(pipe, api_keys=[KEY], max_body_bytes=50_000)) as url:
        yield url


@pytest.fixture(scope="module")
def client(base_url):
    return openai.OpenAI(base_url=base_url, api_key=KEY, max_retries=0)


def test_models_and_a_grounded_answer_with_citations(client, pipe):
    # ragnodes+sources: the same, with the cited sources at the end of the content
    assert [m.id for m in client.models.list().data] == ["ragnodes", "ragnodes+sources"]
    r = client.chat.completions.create(model="ragnodes", messages=USER, max_tokens=TOKENS)
    text = r.choices[0].message.content
    # the same answer the pipeline gives in process (greedy decoding, the same prompt)
    ranking = pipe.search(QUESTION)
    hits = ranking.hits
    messages = pipe._messages(ranking.query, hits)
    *_, local = pipe.stream_answer(ranking.query, hits, messages, max_new_tokens=TOKENS)
    assert text and text == local.text
    ext = r.ragnodes  # the documented extension field
    assert [s["document_id"] for s in ext["sources"]] == [h.id for h in hits]
    from rag.core.types import Citation

    assert ext["query"] == QUESTION and set(ext["citations"][0]) == set(Citation.model_fields)
    assert r.object == "chat.completion" and r.model == "ragnodes"
    assert 0 < r.usage.completion_tokens <= TOKENS and r.usage.prompt_tokens > 50
    assert r.choices[0].finish_reason in ("stop", "length")


def test_streaming_chunks_join_to_the_answer(client):
    full = client.chat.completions.create(model="ragnodes", messages=USER, max_tokens=TOKENS)
    stream = client.chat.completions.create(
        model="ragnodes",
        messages=USER,
        max_tokens=TOKENS,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert len([c for c in chunks if c.choices and c.choices[0].delta.content]) >= 2
    assert text.strip() == full.choices[0].message.content
    last = [c for c in chunks if c.choices][-1]
    assert last.choices[0].finish_reason in ("stop", "length")
    assert last.ragnodes["sources"] == full.ragnodes["sources"]
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens <= TOKENS


def test_async_client(base_url, client):
    async def ask():
        async with openai.AsyncOpenAI(base_url=base_url, api_key=KEY, max_retries=0) as aclient:
            r = await aclient.chat.completions.create(
                model="ragnodes", messages=USER, max_tokens=TOKENS
            )
            pieces = []
            async for c in await aclient.chat.completions.create(
                model="ragnodes", messages=USER, max_tokens=TOKENS, stream=True
            ):
                pieces += [c.choices[0].delta.content or ""] if c.choices else []
            return r, "".join(pieces)

    r, streamed = asyncio.run(ask())
    sync = client.chat.completions.create(model="ragnodes", messages=USER, max_tokens=TOKENS)
    assert r.choices[0].message.content == sync.choices[0].message.content == streamed.strip()


def test_follow_up_is_condensed_with_the_history(client):
    messages = [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "Tell me about Saturn."},
        {"role": "assistant", "content": "Saturn is the sixth planet, known for its rings [1]."},
        {"role": "user", "content": "What is its largest moon?"},
    ]
    r = client.chat.completions.create(model="ragnodes", messages=messages, max_tokens=TOKENS)
    # SmolLM2 resolves "its" from the history: the retrieval query names Saturn
    assert "Saturn" in r.ragnodes["query"]
    assert "titan" in [s["document_id"] for s in r.ragnodes["sources"]]


def test_filter_and_k_through_the_extension(client):
    r = client.chat.completions.create(
        model="ragnodes",
        messages=USER,
        max_tokens=2,
        extra_body={"ragnodes": {"k": 1, "filter": {"topic": "no-such-topic"}}},
    )
    assert r.ragnodes["sources"] == []
    r = client.chat.completions.create(
        model="ragnodes", messages=USER, max_tokens=2, extra_body={"ragnodes": {"k": 1}}
    )
    assert len(r.ragnodes["sources"]) == 1


def test_errors_in_openai_shape(base_url, client):
    bad_key = openai.OpenAI(base_url=base_url, api_key="wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as e:
        bad_key.chat.completions.create(model="ragnodes", messages=USER)
    assert e.value.body["type"] == "authentication_error" and "API key" in e.value.body["message"]
    with pytest.raises(openai.UnprocessableEntityError) as e:
        client.chat.completions.create(model="ragnodes", messages=[])
    assert e.value.body["param"] == "messages" and e.value.body["code"] == "validation_error"
    with pytest.raises(openai.BadRequestError, match="last message must be the user"):
        client.chat.completions.create(
            model="ragnodes", messages=[*USER, {"role": "assistant", "content": "Jupiter."}]
        )
    with pytest.raises(openai.APIStatusError) as e:
        client.chat.completions.create(
            model="ragnodes", messages=[{"role": "user", "content": "planet " * 10_000}]
        )
    assert e.value.status_code == 413 and e.value.body["code"] == "payload_too_large"
    with pytest.raises(openai.BadRequestError, match="no text encoder"):
        client.embeddings.create(model="ragnodes", input="a planet")
    # a streamed error arrives as an error event: the SDK raises it
    with pytest.raises(openai.APIError, match="empty"):
        list(
            client.chat.completions.create(
                model="ragnodes", messages=[{"role": "user", "content": "  "}], stream=True
            )
        )


def test_embeddings_equal_the_index_encoder(minilm):
    from retrievers import DenseRetriever

    dense = DenseRetriever(encoder=minilm).index(read_documents(demo_corpus_path()))
    texts = ["the largest planet", "rings of ice"]
    with serving(create_app(Pipeline(retriever=dense), api_keys=[KEY])) as url:
        c = openai.OpenAI(base_url=url, api_key=KEY, max_retries=0)
        r = c.embeddings.create(model="minilm", input=texts)  # the SDK asks for base64
        floats = c.embeddings.create(model="minilm", input=texts[0], encoding_format="float")
        raw = c.embeddings.with_raw_response.create(
            model="minilm", input=texts, encoding_format="base64"
        ).http_response.json()
        with pytest.raises(openai.BadRequestError, match="dimensions must be 384"):
            c.embeddings.create(model="minilm", input="x", dimensions=12)
    want = minilm.encode(texts, kind="document")
    got = np.array([d.embedding for d in r.data])
    assert got.shape == (2, 384) and np.allclose(got, want, atol=1e-5)
    assert np.allclose(floats.data[0].embedding, want[0], atol=1e-5)
    b64 = np.frombuffer(base64.b64decode(raw["data"][1]["embedding"]), dtype="<f4")
    assert np.allclose(b64, want[1], atol=1e-5)
    assert r.usage.prompt_tokens > 4


SEARCH_TOOL = {
    "type": "function",
    "function": {
        "name": "search",
        "description": "search the collection; returns numbered sources",
        "parameters": {
            "type": "object",
            "properties": {"query": {"type": "string", "description": "search words"}},
            "required": ["query"],
        },
    },
}


def test_tool_calls_from_the_sdk(client):
    ask = [{"role": "user", "content": "Which planet has the most moons?"}]
    r = client.chat.completions.create(
        model="ragnodes", messages=ask, tools=[SEARCH_TOOL], max_tokens=32
    )
    call = r.choices[0].message.tool_calls[0]
    assert r.choices[0].finish_reason == "tool_calls"
    assert call.function.name == "search" and "moons" in call.function.arguments
    chunks = list(
        client.chat.completions.create(
            model="ragnodes", messages=ask, tools=[SEARCH_TOOL], max_tokens=32, stream=True
        )
    )
    deltas = [c.choices[0].delta.tool_calls for c in chunks if c.choices]
    streamed = next(d for d in deltas if d)[0]
    assert streamed.function.arguments == call.function.arguments
    # "none" turns tools off: a grounded answer
    r = client.chat.completions.create(
        model="ragnodes", messages=ask, tools=[SEARCH_TOOL], tool_choice="none", max_tokens=2
    )
    assert r.choices[0].message.tool_calls is None and r.ragnodes["sources"]


def test_agent_uses_native_tool_calls_through_the_server(base_url, pipe, monkeypatch):
    from rag.app.agent import Agent
    from rag.generators import OpenAICompatibleGenerator

    monkeypatch.setenv("RAG_TEST_KEY", KEY)
    gen = OpenAICompatibleGenerator(
        base_url=base_url, api_key_env="RAG_TEST_KEY", native_tools=True, max_new_tokens=32
    )
    assert gen.supports_tools and not OpenAICompatibleGenerator().supports_tools
    answer = Agent(pipe, gen, max_steps=2).run("Which moon of Saturn has lakes?")
    searches = [s for s in answer.trace if s.action == "search"]
    assert searches, answer.trace
    assert searches and searches[0].query != "Which moon of Saturn has lakes?"  # the model's
    assert "titan" in searches[0].document_ids


@pytest.mark.slow  # a `rag chat` subprocess and an agent loop: ~1 min on a loaded 2-core box
def test_rag_chat_agent_over_the_server(base_url, pipe, tmp_path):
    """`rag chat IDX --agent --base-url URL --native-tools`: the terminal chat's agent calls
    the search tool through the server's tool calls (the trace shows the model's query)."""
    Pipeline(retriever=pipe.retriever).save(tmp_path / "idx")
    cmd = [
        sys.executable,
        "-m",
        "rag.app.cli",
        "chat",
        str(tmp_path / "idx"),
        "--agent",
        "--base-url",
        base_url,
        "--api-key-env",
        "RAG_TEST_KEY",
        "--native-tools",
        "--max-steps",
        "2",
        "--max-new-tokens",
        "32",
        "-k",
        "2",
    ]
    env = {**os.environ, "RAG_TEST_KEY": KEY, "PYTHONPATH": str(ROOT)}
    out = subprocess.run(
        cmd,
        input="Which moon of Saturn has lakes?\n/query\n/quit\n",
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    trace = out.stdout.split("/query", 1)[-1] if "/query" in out.stdout else out.stdout
    assert re.search(r"search [\"'].+[\"'] -> .*titan", trace), out.stdout[-2000:]
