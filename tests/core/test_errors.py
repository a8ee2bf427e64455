"""Errors by kind (``rag.core.errors``): each kind has its class, its HTTP status and a message with
a fix; the kinds that were once all ``ConfigError`` stay catchable as ``ConfigError`` where a bad
value is concerned (input, not found), and no longer are where it is not (generation, model,
index state)."""

from __future__ import annotations

import pytest

pytest.importorskip("fastapi")

from fastapi.testclient import TestClient  # noqa: E402

from rag.app.server_guards import rag_error_status  # noqa: E402
from rag.core.errors import (  # noqa: E402
    NO_OUTPUT,
    ConfigError,
    GenerationError,
    IndexCorruptError,
    IndexLockedError,
    IndexStateError,
    InputError,
    ModelError,
    ModelNotFoundError,
    NotFoundError,
    NotIndexedError,
    RagError,
)


def test_kinds_and_their_statuses() -> None:
    assert issubclass(InputError, ConfigError) and issubclass(NotFoundError, InputError)
    for kind in (GenerationError, ModelError, IndexStateError):
        assert issubclass(kind, RagError) and not issubclass(kind, ConfigError)
    assert issubclass(ModelNotFoundError, ModelError) and issubclass(ModelNotFoundError, OSError)
    assert issubclass(IndexCorruptError, IndexStateError)
    assert issubclass(IndexCorruptError, ValueError)
    assert issubclass(NotIndexedError, RuntimeError) and issubclass(IndexLockedError, RuntimeError)
    from rag.core.llm.http import HTTPGeneratorError

    assert issubclass(HTTPGeneratorError, GenerationError)
    want = {
        ConfigError("x"): (400, "bad_request"),
        InputError("x"): (400, "bad_request"),
        NotFoundError("x"): (404, "not_found"),
        NotIndexedError("x"): (409, "conflict"),
        IndexLockedError("x"): (409, "conflict"),
        IndexCorruptError("x"): (503, "unavailable"),
        ModelNotFoundError("x"): (503, "unavailable"),
        GenerationError("x"): (502, "generation_failed"),
        RagError("x"): (400, "bad_request"),
    }
    assert {type(e).__name__: rag_error_status(e) for e in want} == {
        type(e).__name__: s for e, s in want.items()
    }


def test_request_input_is_an_input_error_with_its_fix() -> None:
    from rag.core.nodes import check_k, check_query

    with pytest.raises(InputError, match="pass a non-empty question"):
        check_query("  ")
    with pytest.raises(InputError, match="k must be >= 1"):
        check_k(0)
    assert "check its backend" in NO_OUTPUT


@pytest.fixture(scope="module")
def client():
    from rag.app.demo import demo_corpus_path
    from rag.app.server import create_app
    from rag.generators import OpenAICompatibleGenerator
    from rag.index.persist import read_documents
    from rag.pipeline import Pipeline
    from retrievers import BM25Retriever

    bm25 = BM25Retriever().index(read_documents(demo_corpus_path()))
    # a real HTTP generator whose backend is not there: nothing listens on port 9
    gen = OpenAICompatibleGenerator(
        base_url="http://127.0.0.1:9/v1", model="m", max_retries=0, connect_timeout=0.5
    )
    pipe = Pipeline(retriever=bm25, generator=gen, k=3)
    return TestClient(create_app(pipe, auth=False), raise_server_exceptions=False)


def test_server_answers_each_kind_with_its_status(client) -> None:
    r = client.post("/ask", json={"question": "Which planet is the largest?"})
    assert r.status_code == 502 and r.json()["error"] == "generation_failed"
    assert "127.0.0.1:9" in r.json()["message"]
    r = client.get("/chat/no-such-conversation")
    assert r.status_code == 404 and r.json()["error"] == "not_found"
    assert "send a message without conversation_id" in r.json()["message"]
    r = client.post("/search", json={"query": "planet", "k": 2})  # the index answers fine
    assert r.status_code == 200
