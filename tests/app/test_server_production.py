"""The server in production (issue #33): load isolation, disconnects, SIGTERM, spans, limits.

Real processes on 127.0.0.1 and real HTTP clients: ``rag serve`` over an index whose pipeline
answers through a slow OpenAI-compatible upstream (``tests/llm_stub.py``: one token per 20 ms,
what a vLLM behind the server looks like to it), so a generation is long and I/O-bound; the local
token loop (SmolLM2 through transformers) is checked for cancellation on its own. Every loop is
bounded in count and time. Latency figures are ratios measured side by side in one run (the
machine is shared)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import socket
import threading
import time

import numpy as np
import pytest

pytest.importorskip("fastapi")
httpx = pytest.importorskip("httpx")
from server_procs import AUTH, KEY, llm_stub, make_index, rag_serve, stub_stats  # noqa: E402

QUERIES = ["largest planet", "rings of Saturn", "red planet Mars", "hottest planet",
           "moons of Jupiter", "comet tail", "solar wind", "dwarf planet Pluto"]


@pytest.fixture(scope="module")
def upstream():
    with llm_stub(0.04) as base:  # 25 tokens/s per stream
        yield base


@pytest.fixture(scope="module")
def index(upstream, tmp_path_factory):
    return make_index(tmp_path_factory.mktemp("prod") / "idx", upstream, max_new_tokens=64)


@pytest.fixture(scope="module")
def server(index):
    """One server with small limits for the limit, disconnect and tracing tests."""
    flags = ["--body-timeout", "3", "--max-prompt-tokens", "2000", "--read-only"]
    with rag_serve(index, *flags, env={"OTEL_TRACES_EXPORTER": "console"}) as s:
        yield s


# -- load ----------------------------------------------------------------------------------------
async def _burst(url: str, clients: int, per_client: int) -> list[float]:
    """``clients`` concurrent clients, ``per_client`` /search each; the latencies in ms."""
    lat: list[float] = []
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(headers=AUTH, timeout=30, limits=limits) as c:

        async def worker(i: int) -> None:
            for j in range(per_client):
                body = {"query": QUERIES[(i + j) % len(QUERIES)], "k": 5}
                t = time.perf_counter()
                r = await c.post(f"{url}/search", json=body)
                lat.append((time.perf_counter() - t) * 1000)
                assert r.status_code == 200, r.text

        await asyncio.gather(*(worker(i) for i in range(clients)))
    return lat


class _Stream(threading.Thread):
    """A long streamed chat completion, read until :meth:`stop` (bounded by its max_tokens)."""

    def __init__(self, url: str, max_tokens: int = 1500) -> None:
        super().__init__(daemon=True)
        self.url, self.max_tokens = url, max_tokens
        self.tokens, self.first, self.done = 0, threading.Event(), threading.Event()
        self.finished = False  # reached [DONE] on its own
        self._stop = threading.Event()

    def run(self) -> None:
        body = {"model": "x", "stream": True, "max_tokens": self.max_tokens,
                "messages": [{"role": "user", "content": "Tell me about Jupiter."}]}
        try:
            with httpx.stream("POST", f"{self.url}/v1/chat/completions", json=body,
                              headers=AUTH, timeout=60) as r:
                for line in r.iter_lines():
                    if line == "data: [DONE]":
                        self.finished = True
                    elif line.startswith("data:") and '"content"' in line:
                        self.tokens += 1
                        self.first.set()
                    if self._stop.is_set():
                        return
        except httpx.HTTPError:
            pass
        finally:
            self.done.set()

    def stop(self) -> None:
        self._stop.set()


def _p95(xs: list[float]) -> float:
    return float(np.percentile(xs, 95))


def _loaded_burst(url: str, per_client: int) -> tuple[list[float], int]:
    streams = [_Stream(url), _Stream(url)]
    for s in streams:
        s.start()
    assert all(s.first.wait(30) for s in streams), "the long streams did not start"
    before = sum(s.tokens for s in streams)
    lat = asyncio.run(_burst(url, 32, per_client))
    tokens = sum(s.tokens for s in streams) - before
    assert not any(s.done.is_set() for s in streams), "a stream ended during the burst"
    for s in streams:
        s.stop()
    for s in streams:
        s.done.wait(30)
    return lat, tokens


def _load_run(url: str, rounds: int, per_client: int) -> dict:
    """Idle and loaded bursts in ABBA order (idle, loaded, loaded, idle, ...), so a drift in the
    shared machine's load hits both alike; p95 over all the bursts of each kind."""
    asyncio.run(_burst(url, 32, 2))  # warm connections and caches
    idle: list[float] = []
    loaded: list[float] = []
    tokens_during = []
    for r in range(rounds):
        for kind in ("idle", "loaded") if r % 2 == 0 else ("loaded", "idle"):
            if kind == "idle":
                idle += asyncio.run(_burst(url, 32, per_client))
            else:
                lat, tokens = _loaded_burst(url, per_client)
                loaded += lat
                tokens_during.append(tokens)
    return {"idle_p95_ms": _p95(idle), "loaded_p95_ms": _p95(loaded),
            "idle_p50_ms": float(np.median(idle)), "loaded_p50_ms": float(np.median(loaded)),
            "requests_each": len(idle), "stream_tokens_during_bursts": tokens_during}


def _check_load(out: dict) -> None:
    print("\nload:", json.dumps(out))  # shared 2-core machine: only the ratio is asserted
    assert all(t > 0 for t in out["stream_tokens_during_bursts"]), out
    assert out["loaded_p95_ms"] <= 2 * out["idle_p95_ms"], out


def test_search_p95_under_two_long_streams(server):
    """32 concurrent /search while 2 long answers stream: p95 within 2x its idle p95."""
    _check_load(_load_run(server.url, rounds=2, per_client=3))


@pytest.mark.slow
def test_search_p95_under_two_long_streams_long(server):
    _check_load(_load_run(server.url, rounds=6, per_client=8))


# -- disconnects ---------------------------------------------------------------------------------
def _stopped_within(upstream: str, t_disconnect: float, limit: float = 1.0) -> dict:
    """Wait ``limit`` + 0.5 s, then check the upstream sent nothing after ``limit`` s."""
    time.sleep(limit)
    at_limit = stub_stats(upstream)
    time.sleep(0.5)
    later = stub_stats(upstream)
    assert later["sent"] == at_limit["sent"], (at_limit, later)  # the generation has stopped
    assert later["last_sent"] - t_disconnect < limit, (later, t_disconnect)
    return later


def test_disconnect_stops_generation_within_a_second(server, upstream):
    for path, body in [
        ("/v1/chat/completions", {"model": "x", "stream": True, "max_tokens": 1500,
                                  "messages": [{"role": "user", "content": "Jupiter?"}]}),
        ("/ask", {"question": "Which planet is the largest?", "stream": True}),
    ]:
        before = stub_stats(upstream)
        with httpx.stream("POST", server.url + path, json=body, headers=AUTH, timeout=30) as r:
            got = 0
            for line in r.iter_lines():
                got += line.startswith(("data", "event"))
                if got == 12:
                    break
            assert got == 12
            t_disconnect = time.time()
        after = _stopped_within(upstream, t_disconnect)
        sent_after = after["sent"] - before["sent"]
        assert sent_after < 64, (path, sent_after)  # the stream was cut, not run to its end
    # a non-streamed answer whose client gives up is cancelled too
    before = stub_stats(upstream)
    body = {"model": "x", "max_tokens": 1500, "messages": [{"role": "user", "content": "Mars?"}]}
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(server.url + "/v1/chat/completions", json=body, headers=AUTH, timeout=1.0)
    after = _stopped_within(upstream, time.time())
    assert after["sent"] - before["sent"] < 100, after
    assert after["open"] == 0


def test_cancel_reaches_the_local_token_loop(smollm):
    """Closing :meth:`Pipeline.astream_answer` (a client gone) stops SmolLM2's decoding loop at
    its next token: the step count stops growing within 1 s."""
    from rag.core.concurrency import Cancel, cancel_scope
    from rag.core.types import Query
    from rag.pipeline import Pipeline
    from retrievers import BM25Retriever

    pipe = Pipeline(retriever=BM25Retriever(), generator=smollm)
    messages = [{"role": "user", "content": "Count from 1 to 300, one number per line."}]

    async def main() -> tuple[int, int, int, float]:
        cancel = Cancel()
        with cancel_scope(cancel):
            agen = pipe.astream_answer(Query(text="count"), [], messages, max_new_tokens=400)
            pieces = 0
            async for _ in agen:
                pieces += 1
                if pieces == 5:
                    break
            at_close = cancel.tokens
            await agen.aclose()
            t0 = time.monotonic()
        await asyncio.sleep(1.0)
        at_1s = cancel.tokens
        await asyncio.sleep(0.5)
        return at_close, at_1s, cancel.tokens, time.monotonic() - t0

    at_close, at_1s, at_end, _ = asyncio.run(main())
    print(f"\nlocal token loop: {at_close} tokens at disconnect, {at_1s - at_close} after it")
    assert at_1s == at_end  # stopped
    assert at_1s - at_close <= 10  # the next step or so, far from the 400 budget
    assert at_end < 400


# -- SIGTERM -------------------------------------------------------------------------------------
def test_sigterm_under_load_drains_then_exits(index, upstream):
    drain = 3.0
    with rag_serve(index, "--drain-timeout", str(drain)) as s:
        long_streams = [_Stream(s.url, max_tokens=1500), _Stream(s.url, max_tokens=1500)]
        for st in long_streams:
            st.start()
        assert all(st.first.wait(30) for st in long_streams)
        short = _Stream(s.url, max_tokens=15)  # about 0.6 s: finishes inside the drain
        short.start()
        assert short.first.wait(30)
        searches = {"ok": 0, "refused": 0}
        first_ok = threading.Event()

        def search_load() -> None:
            t_end = time.monotonic() + drain + 5
            while time.monotonic() < t_end:
                try:
                    r = httpx.post(s.url + "/search", json={"query": "planet"}, headers=AUTH,
                                   timeout=5)
                    searches["ok"] += r.status_code == 200
                    first_ok.set()
                except httpx.HTTPError:
                    searches["refused"] += 1
                    return

        threads = [threading.Thread(target=search_load)]
        for t in threads:
            t.start()
        assert first_ok.wait(30)
        t0 = time.monotonic()
        s.proc.send_signal(signal.SIGTERM)
        rc = s.proc.wait(timeout=drain + 15)
        took = time.monotonic() - t0
        for t in threads:
            t.join(10)
        for st in [*long_streams, short]:
            st.done.wait(10)
    print(f"\nSIGTERM: exited in {took:.2f} s (drain deadline {drain} s), rc={rc}")
    assert rc in (0, -signal.SIGTERM)  # uvicorn re-raises the signal once it has shut down
    assert took < drain + 2.0, took  # the deadline, then cancellation and exit
    assert short.finished and short.tokens >= 12  # drained: it ran to its end
    assert not any(st.finished for st in long_streams)  # cut at the deadline
    assert searches["ok"] > 0 and searches["refused"] == 1  # then new connections are refused
    time.sleep(0.5)
    assert stub_stats(upstream)["open"] == 0  # upstream generations were closed too


# -- spans ---------------------------------------------------------------------------------------
@pytest.fixture
def spans():
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from rag.core import tracing

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.use(provider)
    try:
        yield exporter, provider
    finally:
        tracing.use(None)


@contextlib.contextmanager
def _in_process(app):
    """A real uvicorn server for ``app`` on 127.0.0.1 in this process (its spans are ours)."""
    import uvicorn
    from server_procs import free_port

    port = free_port()
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error"))
    t = threading.Thread(target=srv.run, daemon=True)
    t.start()
    deadline = time.time() + 30
    while not srv.started and time.time() < deadline:
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        srv.should_exit = True
        t.join(10)


def _tree_pipeline():
    from scripted_generator import ScriptedGenerator

    from rag.app.cli import demo_corpus_path
    from rag.compressors.selection import RelevanceCutoff
    from rag.index.persist import read_documents
    from rag.pipeline import Pipeline
    from rerankers.relevance_filter import RelevanceFilter
    from retrievers import BM25Retriever
    from retrievers.hybrid import HybridRetriever

    hybrid = HybridRetriever([BM25Retriever(), BM25Retriever(k1=1.5, b=0.75)])
    hybrid.index(read_documents(demo_corpus_path()))
    return Pipeline(retriever=hybrid, rerankers=[RelevanceFilter(threshold=0.0, min_k=1)],
                    compressors=[RelevanceCutoff(threshold=-1e9)],
                    generator=ScriptedGenerator(), k=3)


def _children(spans: list, parent: object) -> list[str]:
    pid = parent.context.span_id  # type: ignore[attr-defined]
    return sorted(s.name for s in spans if s.parent is not None and s.parent.span_id == pid)


def test_span_tree_of_an_ask(spans):
    from rag.app.server import create_app

    exporter, _ = spans
    pipe = _tree_pipeline()
    texts = [d.text for d in pipe.retriever.documents.values()]
    with _in_process(create_app(pipe, api_keys=[KEY])) as url:
        exporter.clear()
        for stream in (False, True):
            r = httpx.post(url + "/ask", json={"question": "Which planet is the largest?",
                                               "stream": stream}, headers=AUTH, timeout=30)
            assert r.status_code == 200, r.text
            got = list(exporter.get_finished_spans())
            exporter.clear()
            roots = [s for s in got if s.parent is None]
            assert [s.name for s in roots] == ["ask"], [s.name for s in got]
            ask = roots[0]
            assert _children(got, ask) == ["chat scripted", "search"]
            search = next(s for s in got if s.name == "search")
            assert _children(got, search) == [
                "compress relevance_cutoff", "rerank relevance_filter", "retrieve hybrid"]
            hybrid = next(s for s in got if s.name == "retrieve hybrid")
            assert _children(got, hybrid) == ["fuse hybrid", "retrieve bm25", "retrieve bm25"]
            chat = next(s for s in got if s.name == "chat scripted")
            a = dict(chat.attributes)
            assert a["gen_ai.operation.name"] == "chat"
            assert a["gen_ai.request.model"] == "scripted"
            assert a["gen_ai.usage.input_tokens"] > 50 and a["gen_ai.usage.output_tokens"] > 0
            rerank = dict(next(s for s in got if s.name.startswith("rerank")).attributes)
            assert rerank["rag.k"] == 3 and rerank["rag.candidates"] >= 1
            assert dict(hybrid.attributes)["rag.candidates"] >= 3
            fuse = next(s for s in got if s.name == "fuse hybrid")
            assert fuse.start_time >= max(s.end_time for s in got if s.name == "retrieve bm25")
            values = [str(v) for s in got for v in s.attributes.values()]
            assert not any(t[:40] in v for t in texts for v in values)  # no document text


def test_adapters_propagate_the_callers_span(spans):
    from llama_index.core.schema import QueryBundle

    from rag.app.integrations.langchain import LangChainRetriever
    from rag.app.integrations.llamaindex import LlamaIndexRetriever

    exporter, provider = spans
    pipe = _tree_pipeline()
    tracer = provider.get_tracer("app")

    async def main() -> None:
        with tracer.start_as_current_span("app langchain"):
            await LangChainRetriever(retriever=pipe, k=2).ainvoke("largest planet")
        with tracer.start_as_current_span("app llamaindex"):
            await LlamaIndexRetriever(pipe, k=2).aretrieve(QueryBundle("largest planet"))

    asyncio.run(main())
    got = list(exporter.get_finished_spans())
    for app in ("app langchain", "app llamaindex"):
        outer = next(s for s in got if s.name == app)
        assert _children(got, outer) == ["search"], [(s.name, s.parent) for s in got]


# -- limits, health, ready line ------------------------------------------------------------------
def test_oversized_chat_is_refused_at_once(server):
    body = {"model": "x", "messages": [{"role": "user", "content": "hi"}] * 3000}
    t = time.perf_counter()
    r = httpx.post(server.url + "/v1/chat/completions", json=body, headers=AUTH, timeout=30)
    took = time.perf_counter() - t
    assert r.status_code == 422 and took < 2.0, (r.status_code, took)
    assert r.json()["error"]["message"] == (
        "messages: 3000 messages exceed the limit of 256 per request (--max-messages)")
    big = {"model": "x", "messages": [{"role": "user", "content": "planet " * 3000}]}
    r = httpx.post(server.url + "/v1/chat/completions", json=big, headers=AUTH, timeout=30)
    assert r.status_code == 422 and "limit of 2000 prompt tokens" in r.text


def _slow_client(port: int, out: list, i: int) -> None:
    body = b'{"query": "largest planet", "k": 3}'
    head = (f"POST /search HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Authorization: Bearer {KEY}\r\nContent-Length: {len(body) + 100}\r\n\r\n").encode()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(head + body[:5])
        t0, got = time.monotonic(), b""
        sock.settimeout(0.25)
        while time.monotonic() - t0 < 10:  # trickle a byte every 0.25 s, as a slowloris does
            try:
                chunk = sock.recv(4096)
            except TimeoutError:
                with contextlib.suppress(OSError):
                    sock.sendall(b" ")
                continue
            except OSError:  # reset: closed by the server with our trickled bytes unread
                chunk = b""
            if not chunk:  # closed by the server
                out.append((i, got, time.monotonic() - t0))
                return
            got += chunk
        out.append((i, got, None))


def test_slow_partial_bodies_are_answered_and_closed(server):
    port = int(server.url.rsplit(":", 1)[1])
    out: list = []
    threads = [threading.Thread(target=_slow_client, args=(port, out, i)) for i in range(40)]
    for t in threads:
        t.start()
    time.sleep(0.3)
    r = httpx.post(server.url + "/search", json={"query": "planet"}, headers=AUTH, timeout=10)
    assert r.status_code == 200  # served meanwhile
    for t in threads:
        t.join(20)
    closed = [x for x in out if x[2] is not None]
    assert len(closed) == 40, [x for x in out if x[2] is None][:3]
    assert all(x[1].startswith(b"HTTP/1.1 408") for x in closed), closed[0][1][:200]
    assert b"body-read timeout of 3 s (--body-timeout)" in closed[0][1]
    assert max(x[2] for x in closed) < 6.0, sorted(x[2] for x in closed)[-3:]


def test_generation_timeout_and_concurrency_limit(index):
    from rag.app.server import create_app
    from rag.app.server_limits import Limits
    from rag.pipeline import Pipeline

    limits = Limits(generation_timeout=3, max_concurrent={"search": 64, "generate": 3})
    with _in_process(create_app(Pipeline.open(index, read_only=True), api_keys=[KEY],
                                limits=limits, read_only=True)) as url:
        _timeouts_and_gates(url)


def _timeouts_and_gates(url: str) -> None:
    body = {"model": "x", "max_tokens": 1500, "messages": [{"role": "user", "content": "Mars?"}]}
    t = time.perf_counter()
    r = httpx.post(url + "/v1/chat/completions", json=body, headers=AUTH, timeout=30)
    assert r.status_code == 408, r.text
    assert "generation timeout of 3 s" in r.json()["error"]["message"]
    assert time.perf_counter() - t < 6
    short = {**body, "stream": True, "max_tokens": 8}  # well within the limit
    with httpx.stream("POST", url + "/v1/chat/completions", json=short, headers=AUTH,
                      timeout=30) as r:
        text = r.read().decode()
    assert '"error"' not in text and text.rstrip().endswith("data: [DONE]"), text[-300:]
    body["stream"] = True
    with httpx.stream("POST", url + "/v1/chat/completions", json=body, headers=AUTH,
                      timeout=30) as r:
        last = [x for x in r.iter_lines() if x.startswith("data:")][-2:]
    assert "generation timeout of 3 s" in last[0] and last[1] == "data: [DONE]", last
    streams = [_Stream(url) for _ in range(3)]  # the generate stage holds 3
    for st in streams:
        st.start()
    try:
        assert all(st.first.wait(30) for st in streams)
        r = httpx.post(url + "/ask", json={"question": "Mars?"}, headers=AUTH, timeout=30)
        assert r.status_code == 429
        assert r.json()["message"].startswith("generate: 3 requests are already in this stage")
        r = httpx.post(url + "/search", json={"query": "Mars"}, headers=AUTH, timeout=30)
        assert r.status_code == 200  # another stage
    finally:
        for st in streams:
            st.stop()
        for st in streams:
            st.done.wait(10)  # the generation timeout (3 s) ends them in any case
    time.sleep(0.5)
    r = httpx.post(url + "/ask", json={"question": "Mars?"}, headers=AUTH, timeout=30)
    assert r.status_code == 200  # the slots are free again


def test_health_ready_line_and_console_spans(server, index):
    for path in ("/health", "/health/live", "/health/ready"):
        assert httpx.get(server.url + path, timeout=10).status_code == 200
    ready = httpx.get(server.url + "/health/ready", timeout=10).json()
    assert ready["documents"] == 24 and ready["model"] == "stub"
    lines = [x for x in server.stderr if "ragnodes ready:" in x]
    assert len(lines) == 1, server.stderr
    line = lines[0]
    for part in (f"index={index}", "generation=1", "documents=24", "model=stub",
                 f"address={server.url}", "ready_in="):
        assert part in line, line
    httpx.post(server.url + "/search", json={"query": "planet"}, headers=AUTH, timeout=10)
    deadline = time.time() + 10
    while time.time() < deadline and not any('"name": "search"' in x for x in server.stdout):
        time.sleep(0.1)
    assert any('"name": "retrieve bm25"' in x for x in server.stdout)  # OTEL_TRACES_EXPORTER


def test_live_before_ready(tmp_path):
    """``load="background"``: live at once, ready (and the routes open) once models load."""
    from fastapi.testclient import TestClient
    from scripted_generator import ScriptedGenerator

    from rag.app.cli import demo_corpus_path
    from rag.app.server import create_app
    from rag.index.persist import read_documents
    from rag.pipeline import Pipeline
    from retrievers import BM25Retriever

    gate = threading.Event()

    class SlowLoading(ScriptedGenerator):
        def load(self):
            gate.wait(10)
            return self

    pipe = Pipeline(retriever=BM25Retriever().index(read_documents(demo_corpus_path())),
                    generator=SlowLoading())
    app = create_app(pipe, api_keys=[KEY], load="background")
    with TestClient(app) as client:
        assert client.get("/health/live").status_code == 200
        assert client.get("/health/ready").status_code == 503
        r = client.get("/health")  # as before: 200 only once requests can be served
        assert r.status_code == 503 and r.json()["status"] == "loading"
        r = client.post("/search", json={"query": "planet"}, headers=AUTH)
        assert r.status_code == 503 and "/health/ready" in r.json()["message"]
        gate.set()
        deadline = time.time() + 10
        while client.get("/health/ready").status_code != 200 and time.time() < deadline:
            time.sleep(0.05)
        assert client.post("/search", json={"query": "planet"}, headers=AUTH).status_code == 200
