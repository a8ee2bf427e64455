"""Real processes for the server's production tests: the slow upstream LLM (``llm_stub.py``) and
``rag serve`` over an index folder whose pipeline answers through it. Every wait is bounded."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
KEY = "prod-test-key-0123456789"
AUTH = {"Authorization": f"Bearer {KEY}"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _env(**extra: str) -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "RAG_API_KEYS": KEY,
           "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false", **extra}
    return env


@contextlib.contextmanager
def llm_stub(delay: float = 0.02) -> Iterator[str]:
    """The slow upstream on a free port; yields its ``/v1`` base URL."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "tests" / "llm_stub.py"), str(port), str(delay)],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=_env(),
    )
    try:
        assert proc.stdout is not None
        line = _readline(proc, 60)
        assert line.strip() == "ready", line
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        proc.kill()
        proc.wait(timeout=10)


def stub_stats(base: str) -> dict:
    return httpx.get(base.removesuffix("/v1") + "/stats", timeout=10).json()


def _readline(proc: subprocess.Popen, timeout: float) -> str:
    out: list[str] = []
    t = threading.Thread(target=lambda: out.append(proc.stdout.readline()), daemon=True)  # type: ignore[union-attr]
    t.start()
    t.join(timeout)
    return out[0] if out else ""


def make_index(folder: Path, upstream: str, max_new_tokens: int = 64) -> Path:
    """A BM25 index of the demo corpus whose saved pipeline answers through ``upstream``."""
    from rag.app.cli import demo_corpus_path
    from rag.generators import OpenAICompatibleGenerator
    from rag.index.persist import read_documents
    from rag.pipeline import Pipeline
    from retrievers import BM25Retriever

    gen = OpenAICompatibleGenerator(base_url=upstream, model="stub",
                                    max_new_tokens=max_new_tokens, timeout=30, max_retries=0)
    bm25 = BM25Retriever().index(read_documents(demo_corpus_path()))
    Pipeline(retriever=bm25, generator=gen, k=3).save(folder)
    return folder


class Served:
    """A ``rag serve`` process: ``url``, ``proc``, and its stderr lines as they come."""

    def __init__(self, proc: subprocess.Popen, url: str) -> None:
        self.proc, self.url = proc, url
        self.stderr: list[str] = []
        self.stdout: list[str] = []
        threading.Thread(target=self._drain, args=(proc.stderr, self.stderr), daemon=True).start()
        threading.Thread(target=self._drain, args=(proc.stdout, self.stdout), daemon=True).start()

    @staticmethod
    def _drain(stream: object, into: list[str]) -> None:
        for line in stream:  # type: ignore[attr-defined]
            into.append(line)

    def wait_ready(self, timeout: float = 120.0) -> float:
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            if self.proc.poll() is not None:
                raise AssertionError(f"rag serve exited: {''.join(self.stderr)[-2000:]}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/health/ready", timeout=2).status_code == 200:
                    return time.monotonic() - t0
            time.sleep(0.1)
        raise AssertionError(f"not ready in {timeout} s: {''.join(self.stderr)[-2000:]}")


@contextlib.contextmanager
def rag_serve(index: Path, *flags: str, env: dict[str, str] | None = None) -> Iterator[Served]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "rag.app.cli", "serve", str(index), "--port", str(port), *flags],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(**(env or {})),
        cwd=ROOT,
    )
    served = Served(proc, f"http://127.0.0.1:{port}")
    try:
        served.wait_ready()
        yield served
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)


@contextlib.contextmanager
def serving(app: Any, path: str = "", wait_s: float = 60.0) -> Iterator[str]:
    """A real uvicorn server for the FastAPI ``app`` on 127.0.0.1 (a free port), in a thread of
    this process, stopped afterwards; yields its base URL plus ``path`` (e.g. ``"/v1"``)."""
    import pytest

    uvicorn = pytest.importorskip("uvicorn")
    from bench.bench_server import free_port

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.time() + wait_s
        while not server.started and time.time() < deadline:
            time.sleep(0.05)
        assert server.started
        yield f"http://127.0.0.1:{port}{path}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
