"""The HTTP server: auth (401), body limits (413), validation (422), ragnodes errors (400), no
stack traces (500), SSE answers, document changes, CORS off by default, and schemathesis fuzzing
of our own OpenAPI schema. The answers come from a scripted generator: the server is under test."""

from __future__ import annotations

import json
import threading

import pytest
from server_procs import serving

pytest.importorskip("fastapi")
from fastapi import APIRouter  # noqa: E402
from fastapi.testclient import TestClient  # noqa: E402
from scripted_generator import ScriptedGenerator  # noqa: E402

from rag.app.cli import demo_corpus_path  # noqa: E402
from rag.app.server import State, create_app  # noqa: E402
from rag.core.errors import ConfigError  # noqa: E402
from rag.core.nodes import BaseReranker  # noqa: E402
from rag.index.persist import read_documents  # noqa: E402
from rag.pipeline import Pipeline  # noqa: E402
from retrievers import BM25Retriever  # noqa: E402

KEY = "test-key-0123456789"
AUTH = {"Authorization": f"Bearer {KEY}"}
QUERY = "Which planet is the largest in the Solar System?"


def make_pipeline() -> Pipeline:
    bm25 = BM25Retriever().index(read_documents(demo_corpus_path()))
    return Pipeline(retriever=bm25, generator=ScriptedGenerator(), k=3)


@pytest.fixture
def pipe():
    return make_pipeline()


@pytest.fixture
def client(pipe):
    return TestClient(create_app(pipe, api_keys=[KEY, "other-key"], max_body_bytes=20_000))


def test_auth(client, monkeypatch, pipe):
    assert client.get("/health").status_code == 200  # open, for load balancers
    body = {"query": QUERY}
    r = client.post("/search", json=body)
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
    assert "API key" in r.json()["message"]
    assert client.post("/search", json=body, headers={"X-API-Key": "wrong"}).status_code == 401
    assert (
        client.post("/search", json=body, headers={"Authorization": "Bearer "}).status_code == 401
    )
    assert client.post("/search", json=body, headers=AUTH).status_code == 200
    assert client.post("/search", json=body, headers={"X-API-Key": "other-key"}).status_code == 200
    with pytest.raises(ConfigError, match="RAG_API_KEYS"):
        monkeypatch.delenv("RAG_API_KEYS", raising=False)
        create_app(pipe)
    monkeypatch.setenv("RAG_API_KEYS", " env-key , ")
    env_client = TestClient(create_app(pipe))
    assert (
        env_client.post("/search", json=body, headers={"X-API-Key": "env-key"}).status_code == 200
    )
    open_client = TestClient(create_app(pipe, auth=False))
    assert open_client.post("/search", json=body).status_code == 200


def test_search_equals_the_pipeline(client, pipe):
    r = client.post("/search", json={"query": QUERY, "k": 4}, headers=AUTH)
    direct = pipe.search(QUERY, k=4)
    got = r.json()
    assert [h["document"]["id"] for h in got["hits"]] == direct.ids
    assert [h["score"] for h in got["hits"]] == pytest.approx(direct.scores)
    assert got["query"]["text"] == QUERY


def test_validation_errors_are_422_with_field_messages(client):
    r = client.post("/search", json={"query": "  ", "k": 0}, headers=AUTH)
    assert r.status_code == 422
    err = r.json()
    assert err["error"] == "validation_error"
    assert {d["field"] for d in err["details"]} == {"query", "k"}
    assert "k: Input should be greater than or equal to 1" in err["message"]
    r = client.post("/search", json={"query": "x", "limit": 3}, headers=AUTH)
    assert r.status_code == 422 and "limit" in r.json()["message"]
    r = client.post(
        "/search", content=b"{not json", headers={**AUTH, "Content-Type": "application/json"}
    )
    assert r.status_code == 422 and r.json()["details"][0]["field"] == "body"
    r = client.post("/search", content=b"query=x", headers=AUTH)  # a form post, as curl -d sends
    assert r.status_code == 422 and "Content-Type: application/json" in r.json()["message"]
    r = client.post("/documents", json={"documents": [{"id": "a"}]}, headers=AUTH)
    assert r.status_code == 422 and "documents.0.text" in r.json()["message"]


def test_body_limit_is_413(client):
    big = {"query": "planet " * 4000}  # ~28 kB > 20 kB
    r = client.post("/search", json=big, headers=AUTH)
    assert r.status_code == 413 and "20000 bytes" in r.json()["message"]

    def chunks():  # no Content-Length: the limit is enforced on the bytes received
        yield b'{"query": "'
        for _ in range(30):
            yield b"planet " * 100
        yield b'"}'

    r = client.post(
        "/search", content=chunks(), headers={**AUTH, "Content-Type": "application/json"}
    )
    assert r.status_code == 413
    assert client.post("/search", json={"query": QUERY}, headers=AUTH).status_code == 200


def test_ragnodes_errors_are_400_and_crashes_hide_internals(pipe):
    client = TestClient(create_app(pipe, api_keys=[KEY]), raise_server_exceptions=False)
    r = client.post("/search", json={"query": "x", "filter": {"y": {"near": 1}}}, headers=AUTH)
    msg = r.json()["message"]  # one line from the one filter parser (rag.core.filters)
    assert r.status_code == 422 and "filter on 'y': unknown operator 'near'" in msg
    assert "\n" not in msg
    r = client.post("/search", json={"query": "x", "filter": {"y": {}}}, headers=AUTH)
    assert r.status_code == 422 and "filter on 'y'" in r.json()["message"]
    # a filter goes through rerankers: applied by the retriever, the reranker sees only matches
    reranked = Pipeline(retriever=pipe.retriever, rerankers=[_ZeroReranker()])
    client = TestClient(create_app(reranked, api_keys=[KEY]), raise_server_exceptions=False)
    new = [
        {"id": f"dwarf{i}", "text": f"dwarf planet number {i}", "metadata": {"y": 2000 + i}}
        for i in range(4)
    ]
    client.post("/documents", json={"documents": new}, headers=AUTH)
    body = {"query": "planet", "k": 5, "filter": {"y": {"gte": 2002}}}
    r = client.post("/search", json=body, headers=AUTH)
    assert r.status_code == 200 and sorted(h["document"]["id"] for h in r.json()["hits"]) == [
        "dwarf2", "dwarf3"
    ]

    class Broken(BM25Retriever):
        def _search(self, queries, k, filter):
            if "largest" in queries[0].text:  # the server's warm-up search still works
                raise RuntimeError("secret internals at /srv/app.py")
            return super()._search(queries, k, filter)

    broken = Pipeline(retriever=Broken().index(read_documents(demo_corpus_path())))
    client = TestClient(create_app(broken, api_keys=[KEY]), raise_server_exceptions=False)
    r = client.post("/search", json={"query": QUERY}, headers=AUTH)
    assert r.status_code == 500
    assert r.json()["error"] == "internal_error"
    assert "secret" not in r.text and "Traceback" not in r.text
    no_gen = TestClient(create_app(Pipeline(retriever=pipe.retriever), api_keys=[KEY]))
    r = no_gen.post("/ask", json={"question": QUERY}, headers=AUTH)
    assert r.status_code == 400 and "generator" in r.json()["message"]


class _ZeroReranker(BaseReranker):  # unregistered (no name): a stage after the retriever
    def _score(self, query, docs):
        return [0.0] * len(docs)


def test_ask_json_and_sse_stream(client, pipe):
    r = client.post("/ask", json={"question": QUERY}, headers=AUTH)
    answer = r.json()
    top = pipe.search(QUERY)
    assert answer["citations"][0]["document_id"] == top.ids[0]
    assert answer["citations"][0]["title"] == top.hits[0].document.title
    assert [h["document"]["id"] for h in answer["contexts"]] == top.ids
    with client.stream("POST", "/ask", json={"question": QUERY, "stream": True}, headers=AUTH) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        events = [
            (block.split("\n")[0].removeprefix("event: "), json.loads(block.split("data: ", 1)[1]))
            for block in r.read().decode().strip().split("\n\n")
        ]
    kinds = [k for k, _ in events]
    assert kinds[-1] == "answer" and set(kinds[:-1]) == {"token"} and len(kinds) > 2
    streamed = "".join(d["text"] for k, d in events if k == "token")
    assert streamed.strip() == events[-1][1]["text"] == answer["text"]


@pytest.mark.slow  # ~6 s of generation on 2 cores; the scripted generator covers SSE by default
def test_sse_with_the_real_generator(smollm, pipe):
    """SmolLM2 behind /ask: transformers' threaded streamer, iterated by the server's threadpool."""
    real = Pipeline(retriever=pipe.retriever, generator=smollm, k=2)
    client = TestClient(create_app(real, api_keys=[KEY]))
    body = {"question": QUERY, "stream": True}
    with client.stream("POST", "/ask", json=body, headers=AUTH) as r:
        blocks = r.read().decode().strip().split("\n\n")
    events = [(b.split("\n")[0][7:], json.loads(b.split("data: ", 1)[1])) for b in blocks]
    assert events[-1][0] == "answer" and {k for k, _ in events[:-1]} == {"token"}
    answer = events[-1][1]
    assert "".join(d["text"] for _, d in events[:-1]).strip() == answer["text"] != ""
    assert [h["document"]["id"] for h in answer["contexts"]] == real.search(QUERY).ids


def test_serve_command_refuses_open_auth_off_loopback(tmp_path, capsys):
    from rag.app.cli import main

    Pipeline(retriever=BM25Retriever().index(read_documents(demo_corpus_path()))).save(tmp_path)
    assert main(["serve", str(tmp_path), "--no-auth", "--host", "0.0.0.0", "--model", "none"]) == 2
    assert "loopback" in capsys.readouterr().err


def test_documents_add_delete(client, pipe):
    n = len(pipe.retriever)
    docs = [
        {
            "id": "x-pluto",
            "text": "Pluto is a dwarf planet in the Kuiper belt.",
            "metadata": {"y": 2006},
        },
        {
            "id": "x-eris",
            "text": "Eris is a dwarf planet, more massive than Pluto.",
            "metadata": {"y": 2005},
        },
    ]
    r = client.post("/documents", json={"documents": docs}, headers=AUTH)
    assert r.json() == {"changed": 2, "total": n + 2}
    r = client.post(
        "/search",
        json={"query": "dwarf planet", "k": 5, "filter": {"y": {"gte": 2006}}},
        headers=AUTH,
    )
    assert [h["document"]["id"] for h in r.json()["hits"]] == ["x-pluto"]
    r = client.request("DELETE", "/documents", json={"ids": ["x-pluto", "nope"]}, headers=AUTH)
    assert r.json() == {"changed": 1, "total": n + 1}
    r = client.post("/search", json={"query": "Kuiper belt Pluto", "k": 30}, headers=AUTH)
    assert "x-pluto" not in [h["document"]["id"] for h in r.json()["hits"]]


def test_save_after_change(pipe, tmp_path):
    client = TestClient(create_app(pipe, api_keys=[KEY], save_to=tmp_path / "idx"))
    doc = {"id": "ceres", "text": "Ceres is the largest object in the asteroid belt."}
    client.post("/documents", json={"documents": [doc]}, headers=AUTH)
    assert "ceres" in Pipeline.open(tmp_path / "idx").retriever.documents


def test_cors_off_by_default_and_opt_in(pipe):
    preflight = {"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"}
    client = TestClient(create_app(pipe, api_keys=[KEY]))
    r = client.post(
        "/search", json={"query": QUERY}, headers={**AUTH, "Origin": "https://evil.example"}
    )
    assert "access-control-allow-origin" not in r.headers
    assert "access-control-allow-origin" not in client.options("/search", headers=preflight).headers
    client = TestClient(create_app(pipe, api_keys=[KEY], cors_origins=["https://app.example"]))
    r = client.options("/search", headers={**preflight, "Origin": "https://app.example"})
    assert r.headers["access-control-allow-origin"] == "https://app.example"


def test_openapi_and_extra_router(pipe):
    router = APIRouter()

    @router.post("/extra")
    def extra(state: State) -> dict:
        return {"documents": len(state.pipeline.retriever)}

    client = TestClient(create_app(pipe, api_keys=[KEY], routers=[router]))
    spec = client.get("/openapi.json").json()
    assert {"/search", "/ask", "/documents", "/health", "/chat", "/extra"} <= set(spec["paths"])
    assert {"HTTPBearer", "APIKeyHeader"} <= set(spec["components"]["securitySchemes"])
    ok = spec["paths"]["/search"]["post"]["responses"]["200"]["content"]["application/json"]
    assert ok["schema"]["$ref"].endswith("/Ranking")
    assert client.post("/extra").status_code == 401  # mounted behind the same key check
    assert client.post("/extra", headers=AUTH).json() == {"documents": len(pipe.retriever)}


def test_concurrent_searches_and_writes_stay_consistent(client, pipe):
    """Readers and writers interleave (threads, as uvicorn runs sync endpoints): no errors."""
    errors = []

    def search():
        for _ in range(20):
            r = client.post("/search", json={"query": QUERY, "k": 3}, headers=AUTH)
            if r.status_code != 200 or len(r.json()["hits"]) != 3:
                errors.append(r.text)

    def write():
        for i in range(10):
            doc = {"id": f"tmp{i}", "text": f"temporary note {i} about planets"}
            client.post("/documents", json={"documents": [doc]}, headers=AUTH)
            client.request("DELETE", "/documents", json={"ids": [f"tmp{i}"]}, headers=AUTH)

    threads = [threading.Thread(target=search) for _ in range(3)] + [threading.Thread(target=write)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and len(pipe.retriever) == 24




def test_bounded_load_on_loopback(pipe):
    """A small load run against a real uvicorn server on 127.0.0.1 (fixed count and time)."""
    from bench.bench_server import run_load

    bodies = [{"query": d.text[:60], "k": 5} for d in pipe.retriever.documents.values()]
    with serving(create_app(pipe, api_keys=[KEY])) as base:
        out = run_load(f"{base}/search", bodies, 200, 4, 60.0, AUTH)
    assert out["errors"] == 0 and out["requests"] == 200, out
    assert 0 < out["p50_ms"] <= out["p95_ms"] <= out["p99_ms"]


class _GatedGenerator(ScriptedGenerator):
    """Yields one piece, then waits until the client says it has received it."""

    def __init__(self) -> None:
        super().__init__()
        self.client_got_first = threading.Event()
        self.waited = None

    def stream(self, messages, **kwargs):
        yield "First "
        self.waited = self.client_got_first.wait(timeout=10)
        yield "then the rest [1]."


def test_sse_pieces_reach_the_client_while_generating(pipe):
    import httpx

    gen = _GatedGenerator()
    app = create_app(Pipeline(retriever=pipe.retriever, generator=gen), api_keys=[KEY])
    with serving(app) as base, httpx.Client(headers=AUTH, timeout=30) as client:
        body = {"question": QUERY, "stream": True}
        with client.stream("POST", f"{base}/ask", json=body) as r:
            lines = r.iter_lines()
            assert next(lines) == "event: token"
            assert json.loads(next(lines)[6:]) == {"text": "First "}
            gen.client_got_first.set()  # only now may the generator go on
            rest = list(lines)
    assert gen.waited is True  # the first piece arrived before generation finished
    assert "event: answer" in rest


# -- schemathesis: our own OpenAPI schema, fuzzed ------------------------------------------------
schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, settings  # noqa: E402

FUZZ_APP = create_app(make_pipeline(), api_keys=[KEY], max_body_bytes=200_000)
schema = schemathesis.openapi.from_asgi("/openapi.json", FUZZ_APP)
# the OpenAI-compatible routes take rules a JSON schema cannot state (the last message is the
# user's; embeddings need a dense index), so schema-valid bodies may get a 400 there
V1 = "^/v1/"


@schema.exclude(path_regex=V1).parametrize()
@pytest.mark.filterwarnings("ignore:query .* has an instruction but no stage uses it")
@settings(max_examples=6, deadline=None, suppress_health_check=list(HealthCheck))
def test_openapi_fuzz(case):
    case.call_and_validate(headers=AUTH)


@schema.include(path_regex=V1).parametrize()
@settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck))
def test_openapi_fuzz_openai_routes(case):
    """No 500s, responses as documented, OpenAI error bodies (the SDK parses them)."""
    from schemathesis.specs.openapi.checks import positive_data_acceptance

    response = case.call_and_validate(headers=AUTH, excluded_checks=[positive_data_acceptance])
    if response.status_code >= 400:
        assert set(response.json()["error"]) == {"message", "type", "param", "code"}


def test_chat_keeps_a_conversation_by_id(client):
    first = client.post("/chat", json={"message": "Tell me about Saturn."}, headers=AUTH)
    assert first.status_code == 200, first.text
    body = first.json()
    cid = body["conversation_id"]
    assert body["answer"] and body["sources"]
    assert body["citations"][0]["document_id"] == body["sources"][0]["id"]
    assert body["citations"][0]["title"] and body["citations"][0]["source"] == "generated"
    follow = {"message": "What is its largest moon?", "conversation_id": cid, "stream": True}
    with client.stream("POST", "/chat", json=follow, headers=AUTH) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        events = [line for line in r.iter_lines() if line.startswith("event:")]
    assert events[-1] == "event: answer" and events.count("event: token") >= 2
    conv = client.get(f"/chat/{cid}", headers=AUTH).json()
    assert [t["question"] for t in conv["turns"]] == [
        "Tell me about Saturn.", "What is its largest moon?"
    ]
    assert client.post("/chat", json={"message": "hi"}).status_code == 401
    bad = client.post("/chat", json={"message": "hi", "conversation_id": "../x"}, headers=AUTH)
    assert bad.status_code == 422
    assert client.delete(f"/chat/{cid}", headers=AUTH).status_code == 200
    assert client.get(f"/chat/{cid}", headers=AUTH).status_code == 404
