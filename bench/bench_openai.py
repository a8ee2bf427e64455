"""End-to-end latency of the `openai` SDK against `rag serve`'s /v1/chat/completions, next to the
same answer computed in process (the peer in the same run: the ratio is what HTTP, the SDK and
the OpenAI wire format add).

Indexes the packaged demo corpus (24 notes) with BM25, starts ``rag serve`` on it as a subprocess
(SmolLM2-135M, API key on), then for each of ``--runs`` questions times
``openai.OpenAI(base_url=..., api_key=...).chat.completions.create(...)`` (non-streamed, and the
time to the first streamed content chunk), and ``Pipeline.ask`` on the same index and model in
this process. Prints one JSON object (medians in ms, one example answer with its citations).

    python bench/bench_openai.py [--runs 5] [--max-tokens 48]

Client, server and the in-process peer share the machine's cores.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
QUESTIONS = [
    "Which planet has the Great Red Spot?",
    "Which moon of Saturn has lakes?",
    "What is the hottest planet?",
    "Which planet is closest to the Sun?",
    "What is the asteroid belt?",
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--max-tokens", type=int, default=48)
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT))
    import openai
    import torch

    from bench.bench_server import free_port, wait_healthy
    from rag.app.cli import demo_corpus_path
    from rag.generators import TransformersGenerator
    from rag.index.persist import read_documents
    from rag.pipeline import Pipeline
    from retrievers import BM25Retriever

    torch.set_num_threads(1)
    questions = [QUESTIONS[i % len(QUESTIONS)] for i in range(args.runs)]
    with tempfile.TemporaryDirectory() as tmp:
        index = Path(tmp) / "demo-bm25"
        Pipeline(retriever=BM25Retriever(), k=3).index(read_documents(demo_corpus_path())).save(
            index
        )
        key, port = secrets.token_urlsafe(24), free_port()
        env = {**os.environ, "RAG_API_KEYS": key, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
        cmd = [sys.executable, "-m", "rag.app.cli", "serve", str(index), "--port", str(port)]
        cmd += ["--max-new-tokens", str(args.max_tokens)]
        proc = subprocess.Popen(cmd, env=env, cwd=ROOT)
        try:
            wait_healthy(f"http://127.0.0.1:{port}/health", proc, timeout=300)
            client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key=key)
            ask = {"model": "ragnodes", "max_tokens": args.max_tokens}
            client.chat.completions.create(messages=[{"role": "user", "content": "warm up"}], **ask)
            e2e, first, example = [], [], None
            for q in questions:
                msgs = [{"role": "user", "content": q}]
                t = time.perf_counter()
                r = client.chat.completions.create(messages=msgs, **ask)
                e2e.append((time.perf_counter() - t) * 1000)
                example = example or {
                    "question": q,
                    "answer": r.choices[0].message.content,
                    "citations": r.ragnodes["citations"],
                }
                t = time.perf_counter()
                for chunk in client.chat.completions.create(messages=msgs, stream=True, **ask):
                    if chunk.choices and chunk.choices[0].delta.content:
                        first.append((time.perf_counter() - t) * 1000)
                        break
        finally:
            proc.terminate()
            proc.wait(timeout=30)
        gen = TransformersGenerator(max_new_tokens=args.max_tokens).load()
        pipe = Pipeline.open(index)
        pipe.generator = gen
        pipe.ask("warm up")
        local = []
        for q in questions:
            t = time.perf_counter()
            pipe.ask(q)
            local.append((time.perf_counter() - t) * 1000)
    p50, p50_local = statistics.median(e2e), statistics.median(local)
    print(
        json.dumps(
            {
                "bench": "openai SDK -> rag serve /v1/chat/completions",
                "index": "demo corpus (24 notes), bm25, k=3",
                "model": "smollm2-135m (fp32, CPU)",
                "max_tokens": args.max_tokens,
                "runs": args.runs,
                "e2e_p50_ms": round(p50, 1),
                "e2e_max_ms": round(max(e2e), 1),
                "stream_first_chunk_p50_ms": round(statistics.median(first), 1),
                "in_process_ask_p50_ms": round(p50_local, 1),
                "ratio_e2e_over_in_process": round(p50 / p50_local, 3),
                "cpus": os.cpu_count(),
                "load_avg_1m": round(os.getloadavg()[0], 1),
                "example": example,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
