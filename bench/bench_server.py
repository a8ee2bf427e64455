"""Load run of ``rag serve``: ``/search`` on scifact BM25 over HTTP on 127.0.0.1.

Indexes scifact's 5,183 abstracts with BM25 into a temp folder, starts ``rag serve`` on it as a
subprocess (API key on, as in production), waits for ``/health``, warms up, then sends a fixed
number of ``/search`` requests (scifact's test questions, cycled) from ``--concurrency`` client
threads with keep-alive connections, stopping early at ``--time-limit`` seconds. Prints one JSON
object: requests/s, p50/p95/p99 latency (ms, client side), errors (non-200 or transport errors).

    python bench/bench_server.py [--requests 2000] [--concurrency 8] [--time-limit 120] [--k 10]

Client and server share the machine's cores, so requests/s is a lower bound of the server alone.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "datasets"


def percentile(sorted_ms: list[float], q: float) -> float:
    """Nearest-rank percentile of an ascending list (q in [0, 100])."""
    if not sorted_ms:
        return float("nan")
    rank = max(1, int(-(-q * len(sorted_ms) // 100)))  # ceil(q/100 * n)
    return sorted_ms[min(rank, len(sorted_ms)) - 1]


def run_load(
    url: str,
    bodies: list[dict[str, Any]],
    requests: int,
    concurrency: int,
    time_limit: float,
    headers: dict[str, str] | None = None,
) -> dict[str, Any]:
    """POST ``bodies`` (cycled) to ``url``: ``requests`` in all from ``concurrency`` threads, each
    with its own keep-alive connection; stop starting new ones after ``time_limit`` seconds."""
    import httpx

    lock = threading.Lock()
    latencies: list[float] = []
    errors: list[str] = []
    counter = iter(range(requests))
    deadline = time.perf_counter() + time_limit

    def worker() -> None:
        with httpx.Client(headers=headers, timeout=30.0) as client:
            while time.perf_counter() < deadline:
                with lock:
                    i = next(counter, None)
                if i is None:
                    return
                t = time.perf_counter()
                try:
                    r = client.post(url, json=bodies[i % len(bodies)])
                    ok = r.status_code == 200 and "hits" in r.json()
                    err = None if ok else f"HTTP {r.status_code}: {r.text[:120]}"
                except httpx.HTTPError as e:
                    err = f"{type(e).__name__}: {e}"
                ms = (time.perf_counter() - t) * 1000
                with lock:
                    latencies.append(ms)
                    if err:
                        errors.append(err)

    t0 = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    wall = time.perf_counter() - t0
    lat = sorted(latencies)
    return {
        "requests": len(lat),
        "requested": requests,
        "concurrency": concurrency,
        "wall_s": round(wall, 3),
        "requests_per_s": round(len(lat) / wall, 1) if wall > 0 else 0.0,
        "p50_ms": round(percentile(lat, 50), 2),
        "p95_ms": round(percentile(lat, 95), 2),
        "p99_ms": round(percentile(lat, 99), 2),
        "errors": len(errors),
        "first_errors": errors[:3],
        "timed_out": len(lat) < requests,
    }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_healthy(url: str, proc: subprocess.Popen, timeout: float = 120.0) -> None:
    import httpx

    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"rag serve exited with code {proc.returncode}")
        try:
            if httpx.get(url, timeout=2.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"{url} not healthy after {timeout} s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--time-limit", type=float, default=120.0)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=50)
    args = ap.parse_args()

    sys.path.insert(0, str(ROOT))
    from evals import load_beir
    from rag.pipeline import Pipeline
    from retrievers import BM25Retriever

    ds = load_beir(SHARED / "scifact")
    bodies = [{"query": q.text, "k": args.k} for q in ds.queries]
    with tempfile.TemporaryDirectory() as tmp:
        index = Path(tmp) / "scifact-bm25"
        t = time.perf_counter()
        Pipeline(retriever=BM25Retriever()).index(ds.corpus).save(index)
        index_s = time.perf_counter() - t
        key, port = secrets.token_urlsafe(24), free_port()
        env = {**os.environ, "RAG_API_KEYS": key, "PYTHONPATH": str(ROOT)}
        cmd = [sys.executable, "-m", "rag.app.cli", "serve", str(index), "--model", "none"]
        proc = subprocess.Popen([*cmd, "--port", str(port)], env=env, cwd=ROOT)
        try:
            base = f"http://127.0.0.1:{port}"
            wait_healthy(base + "/health", proc)
            headers = {"Authorization": f"Bearer {key}"}
            run_load(base + "/search", bodies, args.warmup, 2, 60.0, headers)
            result = run_load(
                base + "/search", bodies, args.requests, args.concurrency, args.time_limit, headers
            )
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    out = {
        "bench": "server /search",
        "dataset": "scifact",
        "documents": len(ds.corpus),
        "distinct_queries": len(bodies),
        "retriever": "bm25",
        "k": args.k,
        "server": "rag serve (uvicorn, 1 process, API key auth on), 127.0.0.1",
        "index_s": round(index_s, 2),
        "cpus": os.cpu_count(),
        **result,
    }
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
