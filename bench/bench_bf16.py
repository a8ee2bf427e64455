"""bf16 against fp32 on THIS CPU, side by side (issue #27): is the bf16 fast path fast here?

On a CPU without native bfloat16 (no ``avx512_bf16``/``amx_bf16``) torch and oneDNN convert bf16
to float32 around every product, so bf16 is slower, not faster. Measured in one run, interleaved:

* MiniLM encoding of ``--docs`` texts: ragnodes ``TransformerEncoder`` fp32 vs ``precision="bf16"``
  and sentence-transformers fp32 vs bf16 autocast (``bench_encoders.py``'s two systems);
* MaxSim over ``--tokens`` random unit token vectors (384-d) for a 32-token query: the packed
  kernel in ``float32`` and ``bf16`` mode, and a plain torch bf16 product of the same shapes.

Texts: the first ``--docs`` documents of a shared collection when present (``locations.DATA``),
else the demo corpus repeated. Prints one JSON object with the CPU flags and bf16/fp32 time
ratios (> 1: bf16 is slower); compare ratios, not absolute times, on a shared machine.

    OMP_NUM_THREADS=1 python bench/bench_bf16.py --docs 128 --rounds 3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np
from locations import DATA

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _texts(n: int) -> list[str]:
    from rag.index.persist import read_documents

    path = DATA / "scifact" / "corpus.jsonl"
    if not path.exists():
        from rag.app.cli import demo_corpus_path

        path = demo_corpus_path()
    docs = read_documents(path)
    return [d.full_text for d in (docs * (1 + n // max(1, len(docs))))[:n]]


def _race(systems: dict, rounds: int) -> dict[str, float]:
    """Median seconds per system over interleaved rounds (order rotating), after a warm-up."""
    for fn in systems.values():
        fn()
    times: dict[str, list[float]] = {k: [] for k in systems}
    names = list(systems)
    for r in range(rounds):
        for name in names[r % len(names):] + names[: r % len(names)]:
            t0 = time.perf_counter()
            systems[name]()
            times[name].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--docs", type=int, default=128)
    ap.add_argument("--tokens", type=int, default=100_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    warnings.simplefilter("ignore", RuntimeWarning)  # the bf16 warning is what we measure
    from bench_encoders import _ours, _st_encoder

    from rag.core.runtime import bf16_emulation_reason, cpu_flags
    from retrievers.kernels.maxsim import PackedTokens

    texts = _texts(args.docs)
    enc = {"ragnodes_fp32": _ours("fp32")[0], "ragnodes_bf16": _ours("bf16")[0],
           "st_fp32": _st_encoder("fp32"), "st_bf16": _st_encoder("bf16")}
    t_enc = _race({k: (lambda f=f: f(texts)) for k, f in enc.items()}, args.rounds)
    print(json.dumps({"encoder_seconds": t_enc}), file=sys.stderr, flush=True)  # partial result

    rng = np.random.default_rng(0)
    t = rng.normal(size=(args.tokens, 384)).astype(np.float32)
    t /= np.linalg.norm(t, axis=1, keepdims=True)
    offsets = np.arange(0, args.tokens + 1, 100)  # 100 tokens a document
    q = t[:32].copy()
    p32, pbf = PackedTokens(t, offsets, "float32"), PackedTokens(t, offsets, "bf16")
    tb, qb = torch.from_numpy(t).bfloat16(), torch.from_numpy(q.T.copy()).bfloat16()
    t_ms = _race({"maxsim_float32": lambda: p32.scores(q, [0, 32]),
                  "maxsim_bf16": lambda: pbf.scores(q, [0, 32]),
                  "torch_bf16_product": lambda: (tb @ qb).float()}, args.rounds)
    flags = sorted(cpu_flags() & {"avx2", "fma", "avx512f", "avx512_bf16", "amx_bf16",
                                  "amx_tile", "avx512_vnni"})
    out = {
        "cpu_flags": flags,
        "bf16_emulated_because": bf16_emulation_reason(),
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "threads": args.threads, "docs": len(texts), "tokens": args.tokens,
        "rounds": args.rounds,
        "machine": "shared (other jobs running): compare the ratios, measured side by side",
        "seconds": {k: round(v, 4) for k, v in {**t_enc, **t_ms}.items()},
        "bf16_over_fp32_time": {
            "ragnodes_encoder": round(t_enc["ragnodes_bf16"] / t_enc["ragnodes_fp32"], 2),
            "sentence_transformers": round(t_enc["st_bf16"] / t_enc["st_fp32"], 2),
            "maxsim_kernel": round(t_ms["maxsim_bf16"] / t_ms["maxsim_float32"], 2),
        },
        "maxsim_bf16_over_torch_bf16_product": round(
            t_ms["maxsim_bf16"] / t_ms["torch_bf16_product"], 2),
        "env": {k: os.environ[k] for k in ("OMP_NUM_THREADS", "ATEN_CPU_CAPABILITY",
                                           "ONEDNN_MAX_CPU_ISA") if k in os.environ},
    }
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
