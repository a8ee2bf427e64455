"""vLLM on CPU against transformers, SmolLM2-135M-Instruct float32, greedy, in one process.

Run with the side venv (``make setup-vllm``), which has both backends:

    OMP_NUM_THREADS=1 PYTHONPATH=$PWD .venv-vllm/bin/python bench/bench_vllm.py --threads 1

* generation: output tokens/s of ``VLLMGenerator`` and ``TransformersGenerator`` for one request
  and for 8 concurrent requests (vLLM: one batch; transformers: the 8 one after another, as its
  generator serves them), and how many of the 8 greedy outputs are identical;
* reranking: (query, passage) pairs/s of the pointwise LLM reranker on each backend, and the max
  difference of their P(relevant).

Prints one JSON object with the ratios vLLM / transformers.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--max-new-tokens", type=int, default=48)
    ap.add_argument("--pairs", type=int, default=32)
    args = ap.parse_args()
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))
    import numpy as np
    import torch

    torch.set_num_threads(args.threads)
    from vllm_cpu_check import PROMPTS

    from rag.core.types import Document, Query
    from rag.generators import TransformersGenerator, VLLMGenerator
    from rerankers import LLMPointwiseReranker

    n = args.max_new_tokens
    convs = [[{"role": "user", "content": p}] for p in PROMPTS]
    t0 = time.perf_counter()
    vgen = VLLMGenerator(max_new_tokens=n, max_model_len=2048).load()
    out: dict = {"threads": args.threads, "vllm_load_s": round(time.perf_counter() - t0, 1)}
    tgen = TransformersGenerator(max_new_tokens=n, device="cpu").load()
    tok = tgen.tokenizer

    def ntok(texts: list[str]) -> int:
        return sum(len(tok.encode(t, add_special_tokens=False)) for t in texts)

    vgen.generate_batch(convs[:1])  # warm-up
    tgen.generate(convs[0])
    res: dict = {}
    for label, fn_v, fn_t in (
        ("single", lambda: vgen.generate_batch(convs[:1]), lambda: [tgen.generate(convs[0])]),
        (
            "concurrent_8",
            lambda: vgen.generate_batch(convs),
            lambda: [tgen.generate(c) for c in convs],
        ),
    ):
        row = {}
        for name, fn in (("vllm", fn_v), ("transformers", fn_t)):
            t0 = time.perf_counter()
            texts = fn()
            dt = time.perf_counter() - t0
            row[name] = {"tokens": ntok(texts), "s": round(dt, 3), "tokens_per_s": ntok(texts) / dt}
            row[name + "_texts"] = texts
        row["vllm_vs_transformers"] = (
            row["vllm"]["tokens_per_s"] / row["transformers"]["tokens_per_s"]
        )
        row["identical_outputs"] = sum(
            a == b for a, b in zip(row.pop("vllm_texts"), row.pop("transformers_texts"))
        )
        res[label] = row
    out["generation"] = res

    docs = [
        Document(id=f"d{i}", text=f"passage {i}: value {(i * 7) % 11}") for i in range(args.pairs)
    ]
    q = Query(text="which passage has value 3", id="q")
    scores = {}
    rr = {}
    for backend in ("vllm", "transformers"):
        r = LLMPointwiseReranker(backend=backend, device="cpu", batch_size=16)
        r._score(q, docs[:2])  # warm-up / load
        t0 = time.perf_counter()
        scores[backend] = np.asarray(r._score(q, docs))
        dt = time.perf_counter() - t0
        rr[backend] = {"pairs_per_s": len(docs) / dt, "s": round(dt, 3)}
    rr["vllm_vs_transformers"] = rr["vllm"]["pairs_per_s"] / rr["transformers"]["pairs_per_s"]
    rr["max_abs_score_diff"] = float(np.abs(scores["vllm"] - scores["transformers"]).max())
    out["pointwise_rerank"] = rr
    print(json.dumps(out, indent=2), flush=True)


if __name__ == "__main__":  # vLLM spawns its engine worker
    main()
