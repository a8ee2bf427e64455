"""Load run of ``rag serve``: ``/search`` on scifact over HTTP on 127.0.0.1, optionally side by
side with a floor server.

Indexes scifact's 5,183 abstracts (BM25, or ``--retriever hybrid``: BM25 + MiniLM dense fused by
RRF, the document vectors read from the bench cache, ``cache("minilm")/scifact.npy``, made by
``TransformerEncoder(precision="fp32")`` and encoded here once if missing: several minutes) into
a temp folder, starts ``rag serve`` on it as a subprocess (API key on, as in production), waits
for ``/health``, warms up, then sends a fixed number of ``/search`` requests (scifact's test
questions, cycled) from ``--concurrency`` client threads with keep-alive connections, stopping
early at ``--time-limit`` seconds.

``--peer floor`` also starts ``bench/floor_server.py`` (FastAPI + sentence-transformers + numpy +
bm25s, the same document vectors, BM25 parameters, depth and RRF) and alternates the load
between the two servers for ``--rounds`` rounds (the order rotating), so both see the same
machine; the ratios (requests/s, p95) and the share of identical top-10 lists are in the JSON.

    python bench/bench_server.py [--retriever bm25|hybrid] [--peer none|floor] [--rounds 3]
        [--requests 2000] [--concurrency 8] [--time-limit 120] [--k 10] [--docs N]

Prints one JSON object: requests/s, p50/p95/p99 latency (ms, client side), errors (non-200 or
transport errors), the CPU model and load averages. Client and servers share the machine's cores,
so requests/s is a lower bound of a server alone.
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
        "latencies_ms": lat,
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


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


def hybrid_depth() -> int:
    """Candidates per child of ragnodes's default hybrid (the floor fuses as many)."""
    sys.path.insert(0, str(ROOT))
    from retrievers import HybridRetriever

    return HybridRetriever.default_depth



def dense_vectors(name: str, corpus: list) -> tuple[list[str], Any]:
    """The set's fp32 MiniLM vectors from the bench cache (encoded and cached when missing)."""
    sys.path.insert(0, str(ROOT / "bench"))
    from bench_fusion_depth import dense_vectors as cached

    return cached(name, corpus)


def build_index(folder: Path, name: str, full: list, corpus: list, retriever: str) -> float:
    """Index ``corpus`` (a prefix of the set's ``full`` corpus, whose vectors are cached)."""
    from rag.pipeline import Pipeline
    from retrievers import BM25Retriever, DenseRetriever, HybridRetriever

    t = time.perf_counter()
    if retriever == "bm25":
        Pipeline(retriever=BM25Retriever()).index(corpus).save(folder)
        return time.perf_counter() - t
    from rag.core.embed_cache import precomputed

    ids, vecs = dense_vectors(name, full)
    row = {i: r for r, i in enumerate(ids)}
    dense = DenseRetriever()
    texts = [d.full_text for d in corpus]
    hybrid = HybridRetriever([BM25Retriever(), dense])
    with precomputed(dense.encoder, texts, vecs[[row[d.id] for d in corpus]]) as c:
        Pipeline(retriever=hybrid).index(corpus).save(folder)
    if c.stats["misses"]:
        raise RuntimeError(f"{c.stats['misses']} documents were encoded: vectors do not match")
    return time.perf_counter() - t


def summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """All rounds of one server together: requests/s over the summed wall time, percentiles
    over every latency, and each round's requests/s."""
    lat = sorted(x for r in runs for x in r["latencies_ms"])
    wall = sum(r["wall_s"] for r in runs)
    return {
        "requests": len(lat),
        "wall_s": round(wall, 2),
        "requests_per_s": round(len(lat) / wall, 1) if wall else 0.0,
        "p50_ms": round(percentile(lat, 50), 2),
        "p95_ms": round(percentile(lat, 95), 2),
        "p99_ms": round(percentile(lat, 99), 2),
        "errors": sum(r["errors"] for r in runs),
        "first_errors": [e for r in runs for e in r["first_errors"]][:3],
        "rounds_requests_per_s": [r["requests_per_s"] for r in runs],
    }


def top_ids(url: str, bodies: list[dict[str, Any]], headers: dict[str, str]) -> list[list[str]]:
    import httpx

    with httpx.Client(headers=headers, timeout=60.0) as c:
        return [[h["document"]["id"] for h in c.post(url, json=b).json()["hits"]] for b in bodies]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--retriever", choices=("bm25", "hybrid"), default="bm25")
    ap.add_argument("--dataset", default="scifact", help="a shared BEIR set (vectors cached)")
    ap.add_argument("--peer", choices=("none", "floor"), default="none")
    ap.add_argument("--rounds", type=int, default=1, help="alternations with the peer")
    ap.add_argument("--requests", type=int, default=2000, help="per server and round")
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--time-limit", type=float, default=120.0)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=50)
    ap.add_argument("--docs", type=int, default=0, help="first N documents only (0: all)")
    ap.add_argument("--compare-queries", type=int, default=100)
    ap.add_argument("--search-batch", type=int, default=None, metavar="N",
                    help="`rag serve --search-batch N` (default: the server's, 32; 1: unbatched)")
    ap.add_argument("--server-env", action="append", default=[], metavar="NAME=VALUE",
                    help="extra environment of `rag serve` only (e.g. a setting under test)")
    args = ap.parse_args()

    sys.path.insert(0, str(ROOT))
    from evals import load_beir

    ds = load_beir(SHARED / args.dataset)
    corpus = ds.corpus[: args.docs] if args.docs else ds.corpus
    bodies = [{"query": q.text, "k": args.k} for q in ds.queries]
    load0 = os.getloadavg()
    procs: dict[str, subprocess.Popen] = {}
    with tempfile.TemporaryDirectory() as tmp:
        index = Path(tmp) / f"{args.dataset}-{args.retriever}"
        index_s = build_index(index, args.dataset, ds.corpus, corpus, args.retriever)
        key = secrets.token_urlsafe(24)
        env = {**os.environ, "RAG_API_KEYS": key, "PYTHONPATH": str(ROOT)}
        serve_env = dict(env, **dict(x.split("=", 1) for x in args.server_env))
        ports = {"ragnodes": free_port()}
        cmd = [sys.executable, "-m", "rag.app.cli", "serve", str(index), "--model", "none"]
        if args.search_batch is not None:
            cmd += ["--search-batch", str(args.search_batch)]
        procs["ragnodes"] = subprocess.Popen(
            [*cmd, "--port", str(ports["ragnodes"])], env=serve_env, cwd=ROOT
        )
        if args.peer == "floor":
            if args.retriever != "hybrid":
                raise SystemExit("--peer floor is the hybrid floor: use --retriever hybrid")
            corpus_file = Path(tmp) / "corpus.jsonl"
            corpus_file.write_text("".join(
                json.dumps({"_id": d.id, "title": d.title, "text": d.text}) + "\n" for d in corpus
            ))
            ids, vecs = dense_vectors(args.dataset, ds.corpus)
            keep = {d.id for d in corpus}
            rows = [r for r, i in enumerate(ids) if i in keep]
            import numpy as np

            np.save(Path(tmp) / "vecs.npy", vecs[rows])
            (Path(tmp) / "ids.json").write_text(json.dumps([ids[r] for r in rows]))
            ports["floor"] = free_port()
            procs["floor"] = subprocess.Popen(
                [sys.executable, str(ROOT / "bench" / "floor_server.py"), str(corpus_file),
                 str(Path(tmp) / "vecs.npy"), str(Path(tmp) / "ids.json"), str(ports["floor"]),
                 str(hybrid_depth())],
                env=env, cwd=ROOT,
            )
        try:
            headers = {"Authorization": f"Bearer {key}"}
            urls = {n: f"http://127.0.0.1:{p}" for n, p in ports.items()}
            for n, u in urls.items():
                wait_healthy(u + "/health", procs[n], timeout=600.0)
                run_load(u + "/search", bodies, args.warmup, 2, 60.0, headers)
            names = list(urls)
            runs: dict[str, list[dict[str, Any]]] = {n: [] for n in names}
            for r in range(max(1, args.rounds)):
                for n in names[r % len(names):] + names[: r % len(names)]:
                    runs[n].append(run_load(urls[n] + "/search", bodies, args.requests,
                                            args.concurrency, args.time_limit, headers))
            same = None
            if len(names) > 1:
                sub = bodies[: args.compare_queries]
                a, b = (top_ids(urls[n] + "/search", sub, headers) for n in names)
                same = round(sum(x == y for x, y in zip(a, b)) / len(sub), 3)
        finally:
            for p in procs.values():
                p.terminate()
            for p in procs.values():
                p.wait(timeout=30)
    servers = {n: summary(v) for n, v in runs.items()}
    out: dict[str, Any] = {
        "bench": "server /search",
        "dataset": args.dataset,
        "documents": len(corpus),
        "distinct_queries": len(bodies),
        "retriever": args.retriever,
        "k": args.k,
        "concurrency": args.concurrency,
        "rounds": max(1, args.rounds),
        "server": "rag serve (uvicorn, 1 process, API key auth on), 127.0.0.1",
        "server_env": args.server_env,
        "search_batch": args.search_batch if args.search_batch is not None else "default (32)",
        "index_s": round(index_s, 2),
        "cpus": os.cpu_count(),
        "cpu": cpu_model(),
        "threads_env": {v: os.environ.get(v) for v in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")},
        "load_avg_start": [round(x, 2) for x in load0],
        "load_avg_end": [round(x, 2) for x in os.getloadavg()],
    }
    if len(servers) == 1:
        out.update(servers["ragnodes"])
    else:
        out["peer"] = ("floor: FastAPI + sentence-transformers + numpy + bm25s, same vectors, "
                       f"BM25 k1/b, depth {hybrid_depth()} (the ragnodes hybrid's) and RRF k=60 "
                       "(bench/floor_server.py)")
        out["servers"] = servers
        rag, floor = servers["ragnodes"], servers["floor"]
        out["requests_per_s_vs_floor"] = round(rag["requests_per_s"] / floor["requests_per_s"], 3)
        out["p95_floor_over_ragnodes"] = round(floor["p95_ms"] / rag["p95_ms"], 3)
        out["top10_identical_vs_floor"] = same
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
