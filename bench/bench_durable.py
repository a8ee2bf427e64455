"""Durable index under load: ``/search`` with 10% writes vs read-only, kill -9, restart; RSS.

1. Indexes scifact (5,183 abstracts) with BM25 into a temp index folder and starts ``rag serve``
   on it (writes are committed before they are acknowledged: the default).
2. ``read_only``: ``--requests`` ``/search`` calls from ``--concurrency`` clients.
3. ``mixed``: the same, but each request is a ``POST /documents`` (one new document) with
   probability ``--write-share``; the ids of acknowledged writes are recorded.
4. ``kill -9`` the server, open the folder again and count acknowledged documents missing.
5. With ``--baseline PATH`` (a checkout of the code before rag.index, e.g. /work/main), steps
   1-4 run against that code too (``rag serve --save``), in the same run, for the ratio.
6. ``--rss-docs N``: serving RSS per document of an index of N short synthetic documents (BM25),
   opened in a fresh process, this code vs the baseline's.

    python bench/bench_durable.py [--requests 1500] [--baseline /work/main] [--rss-docs 200000]

Prints one JSON object. Client and server share the machine's cores.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import secrets
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "datasets"
sys.path.insert(0, str(ROOT / "bench"))
from bench_server import free_port, percentile, wait_healthy  # noqa: E402


def run_mixed(
    base: str, queries: list[str], requests: int, concurrency: int, write_share: float,
    headers: dict[str, str], seed: int = 0,
) -> dict[str, Any]:
    """``requests`` calls from ``concurrency`` keep-alive clients; a share of them add one
    document each. Returns throughput, latencies, errors and the acknowledged ids."""
    import httpx

    lock = threading.Lock()
    lat: dict[str, list[float]] = {"search": [], "write": []}
    errors: list[str] = []
    acked: list[str] = []
    counter = iter(range(requests))
    rng = random.Random(seed)
    plan = [rng.random() < write_share for _ in range(requests)]

    def worker() -> None:
        with httpx.Client(headers=headers, timeout=60.0) as client:
            while (i := next(counter, None)) is not None:
                t = time.perf_counter()
                try:
                    if plan[i]:
                        doc = {"id": f"w{seed}-{i}", "text": f"durable write {i} {queries[i % 50]}"}
                        r = client.post(base + "/documents", json={"documents": [doc]})
                        ok = r.status_code == 200
                        if ok:
                            with lock:
                                acked.append(doc["id"])
                    else:
                        r = client.post(base + "/search", json={"query": queries[i % len(queries)]})
                        ok = r.status_code == 200 and "hits" in r.json()
                    err = None if ok else f"HTTP {r.status_code}: {r.text[:120]}"
                except httpx.HTTPError as e:
                    err = f"{type(e).__name__}: {e}"
                with lock:
                    lat["write" if plan[i] else "search"].append((time.perf_counter() - t) * 1e3)
                    if err:
                        errors.append(err)

    t0 = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    wall = time.perf_counter() - t0
    s, w = sorted(lat["search"]), sorted(lat["write"])
    return {
        "requests": len(s) + len(w),
        "writes": len(w),
        "wall_s": round(wall, 2),
        "requests_per_s": round((len(s) + len(w)) / wall, 1),
        "search_per_s": round(len(s) / wall, 1),
        "search_p50_ms": round(percentile(s, 50), 1),
        "search_p95_ms": round(percentile(s, 95), 1),
        "write_p50_ms": round(percentile(w, 50), 1) if w else None,
        "write_p95_ms": round(percentile(w, 95), 1) if w else None,
        "errors": len(errors),
        "first_errors": errors[:3],
        "acked": acked,
    }


def serve(code: Path, index: Path, key: str, port: int, extra: list[str]) -> subprocess.Popen:
    env = {**os.environ, "RAG_API_KEYS": key, "PYTHONPATH": str(code), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "rag.app.cli", "serve", str(index), "--model", "none"]
    return subprocess.Popen([*cmd, "--port", str(port), *extra], env=env, cwd=code)


def count_present(code: Path, index: Path, ids: list[str]) -> int:
    """Acknowledged ids present after a restart, read by a fresh process of ``code``."""
    script = (
        "import json,sys\nfrom rag.pipeline import Pipeline\n"
        "docs = Pipeline.open(sys.argv[1]).retriever.documents\n"
        "print(sum(i in docs for i in json.load(open(sys.argv[2]))))"
    )
    ids_file = index.parent / f"{index.name}.acked.json"
    ids_file.write_text(json.dumps(ids))
    out = subprocess.run([sys.executable, "-c", script, str(index), str(ids_file)],
                         env={**os.environ, "PYTHONPATH": str(code)}, cwd=code,
                         capture_output=True, text=True, check=True)
    return int(out.stdout.strip().splitlines()[-1])


def server_run(code: Path, corpus: list[Any], queries: list[str], args: argparse.Namespace,
               baseline: bool) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        index = Path(tmp) / "idx"
        build = ("import sys\nfrom evals import load_beir\nfrom rag.pipeline import Pipeline\n"
                 "from retrievers import BM25Retriever\nds = load_beir(sys.argv[1])\n"
                 "Pipeline(retriever=BM25Retriever()).index(ds.corpus).save(sys.argv[2])")
        subprocess.run([sys.executable, "-c", build, str(SHARED / "scifact"), str(index)],
                       env={**os.environ, "PYTHONPATH": str(code)}, cwd=code, check=True)
        key, port = secrets.token_urlsafe(24), free_port()
        headers = {"Authorization": f"Bearer {key}"}
        base = f"http://127.0.0.1:{port}"
        proc = serve(code, index, key, port, ["--save"] if baseline else [])
        try:
            wait_healthy(base + "/health", proc)
            run_mixed(base, queries, 40, 2, 0.0, headers)  # warm up
            ro = run_mixed(base, queries, args.requests, args.concurrency, 0.0, headers)
            mixed = run_mixed(base, queries, args.requests, args.concurrency,
                              args.write_share, headers, seed=1)
        finally:
            proc.send_signal(signal.SIGKILL)  # kill -9: no shutdown hook runs
            proc.wait(timeout=30)
        acked = mixed.pop("acked")
        ro.pop("acked")
        try:
            present = count_present(code, index, acked)
            reopen_error = None
        except subprocess.CalledProcessError as e:
            present, reopen_error = 0, e.stderr.strip().splitlines()[-1][:200]
        return {
            "code": str(code),
            "read_only": ro,
            "mixed": mixed,
            "search_throughput_ratio": round(mixed["search_per_s"] / ro["search_per_s"], 3),
            "request_throughput_ratio": round(mixed["requests_per_s"] / ro["requests_per_s"], 3),
            "acked_writes": len(acked),
            "acked_missing_after_kill9": len(acked) - present,
            "reopen_error": reopen_error,
        }


RSS_SCRIPT = """
import resource, sys, time
def rss():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
from rag.pipeline import Pipeline
import retrievers, bm25s, numpy
base = rss()
t = time.perf_counter()
pipe = Pipeline.open(sys.argv[1])
pipe.search("alpha beta gamma", k=10)
print(rss() - base, time.perf_counter() - t)
"""


def rss_run(code: Path, n: int) -> dict[str, Any]:
    """Serving RSS of a BM25 index of ``n`` short synthetic documents, opened in a fresh process
    (the index is written by the same code)."""
    build = (
        "import random, sys\nfrom rag.pipeline import Pipeline\nfrom retrievers import "
        "BM25Retriever\nrng = random.Random(0)\nwords = [f'w{i}' for i in range(20000)]\n"
        "docs = [{'id': f'doc-{i:07d}', 'title': f'title {i}', 'text': ' '.join("
        "rng.choice(words) for _ in range(12)), 'metadata': {'n': i}} for i in "
        "range(int(sys.argv[2]))]\nPipeline(retriever=BM25Retriever(stemmer=None)).index(docs)"
        ".save(sys.argv[1])"
    )
    env = {**os.environ, "PYTHONPATH": str(code), "OMP_NUM_THREADS": "1"}
    with tempfile.TemporaryDirectory() as tmp:
        index = Path(tmp) / "idx"
        subprocess.run([sys.executable, "-c", build, str(index), str(n)], env=env, cwd=code,
                       check=True)
        out = subprocess.run([sys.executable, "-c", RSS_SCRIPT, str(index)], env=env, cwd=code,
                             capture_output=True, text=True, check=True)
        rss, open_s = out.stdout.split()
        disk = sum(p.stat().st_size for p in index.rglob("*") if p.is_file())
    return {"documents": n, "rss_bytes": int(rss), "rss_bytes_per_doc": round(int(rss) / n, 1),
            "open_s": round(float(open_s), 2), "disk_bytes_per_doc": round(disk / n, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--requests", type=int, default=1500)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--write-share", type=float, default=0.1)
    ap.add_argument("--baseline", type=Path, default=None, help="code before rag.index")
    ap.add_argument("--rss-docs", type=int, default=0, help="synthetic documents for RSS")
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT))
    from evals import load_beir

    ds = load_beir(SHARED / "scifact")
    queries = [q.text for q in ds.queries]
    out: dict[str, Any] = {"bench": "durable index under load", "dataset": "scifact",
                           "documents": len(ds.corpus), "retriever": "bm25",
                           "concurrency": args.concurrency, "write_share": args.write_share,
                           "cpus": os.cpu_count()}
    out["durable"] = server_run(ROOT, ds.corpus, queries, args, baseline=False)
    if args.baseline:
        out["baseline"] = server_run(args.baseline, ds.corpus, queries, args, baseline=True)
    if args.rss_docs:
        out["rss_durable"] = rss_run(ROOT, args.rss_docs)
        if args.baseline:
            out["rss_baseline"] = rss_run(args.baseline, args.rss_docs)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
