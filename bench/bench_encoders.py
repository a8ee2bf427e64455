"""Encoders side by side in one run: ragnodes (fp32 default, bf16 fast mode, ONNX Runtime fp32
and int8 with ``backend="onnx"``) against
sentence-transformers (fp32, bf16 autocast) on all-MiniLM-L6-v2, threads fixed.

* speed: interleaved rounds of ``--docs`` SciFact documents per system (title + text, as dense
  indexing embeds them): docs/s, tokens/s; and single short-query latency (p50 over the queries);
* quality: nDCG@10 of exact cosine search per shared collection for ragnodes fp32 and bf16, and
  the max cosine error of their document vectors against the fp32 reference vectors in
  the ``minilm`` bench cache (``<set>.npy``,
  ``bench/locations.py``) (made by ``TransformerEncoder(precision="fp32")``) where present.

    OMP_NUM_THREADS=1 python bench/bench_encoders.py --threads 1 --docs 500 --rounds 3

Prints one JSON object; speed ratios are relative to sentence-transformers fp32 in the same run.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import time

import numpy as np
from locations import DATA, cache

REF = cache("minilm")


def _st_encoder(precision: str):
    from sentence_transformers import SentenceTransformer

    from rag.core.models import resolve_model

    model = SentenceTransformer(resolve_model("minilm"), device="cpu")
    torch = __import__("torch")

    def encode(texts: list[str]) -> np.ndarray:
        ctx = (
            torch.autocast("cpu", dtype=torch.bfloat16)
            if precision == "bf16"
            else contextlib.nullcontext()
        )
        with ctx:
            return model.encode(texts, batch_size=32, normalize_embeddings=True)

    return encode


def _encoder(spec: str, cache_dir: str | None = None):
    """``fp32`` | ``bf16`` (torch) | ``onnx-fp32`` | ``onnx-int8`` (rag.core.onnx_runtime)."""
    from rag.core.encoders import TransformerEncoder

    backend, _, precision = spec.rpartition("-")
    return TransformerEncoder(precision=precision, backend=backend or "torch", cache=cache_dir)


def _ours(spec: str):
    enc = _encoder(spec).load()
    return lambda texts: enc.encode(texts), enc


def speed(systems: dict, texts: list[str], n_tokens: int, rounds: int, queries: list[str]) -> dict:
    times: dict[str, list[float]] = {k: [] for k in systems}
    for fn in systems.values():  # warm-up (kernel selection, lazy init)
        fn(texts[:32])
    names = list(systems)
    for r in range(rounds):  # interleaved, and the order rotates so no system always goes first
        for name in names[r % len(names) :] + names[: r % len(names)]:
            fn = systems[name]
            t0 = time.perf_counter()
            fn(texts)
            times[name].append(time.perf_counter() - t0)
    out = {}
    for name, fn in systems.items():
        lat = []
        for q in queries:
            t0 = time.perf_counter()
            fn([q])
            lat.append(time.perf_counter() - t0)
        best = min(times[name])
        out[name] = {
            "docs_per_s": len(texts) / best,
            "tokens_per_s": n_tokens / best,
            "round_s": [round(t, 3) for t in times[name]],
            "query_p50_ms": 1000 * statistics.median(lat),
        }
    base = out["st_fp32"]["docs_per_s"]
    base_q = out["st_fp32"]["query_p50_ms"]
    for v in out.values():
        v["speed_vs_st_fp32"] = v["docs_per_s"] / base
        v["query_latency_vs_st_fp32"] = v["query_p50_ms"] / base_q
    return out


def quality(name: str, precisions: list[str]) -> dict:
    from evals.datasets import load_beir
    from evals.measures import nDCG, score_run
    ds = load_beir(DATA / name)
    texts = [d.full_text for d in ds.corpus]
    ids = [d.id for d in ds.corpus]
    qs = [q for q in ds.queries if q.id in ds.qrels and q.text.strip()]
    ref = None
    if (REF / f"{name}.npy").exists():
        ref_ids = json.loads((REF / f"{name}.ids.json").read_text())
        if ref_ids == ids:
            ref = np.load(REF / f"{name}.npy")
    res: dict = {"docs": len(texts), "queries": len(qs)}
    for p in precisions:
        # document vectors of the ONNX paths are kept in the bench cache: re-runs cost queries
        enc = _encoder(p, str(cache("encoders")) if p.startswith("onnx") else None)
        t0 = time.perf_counter()
        if p == "fp32" and ref is not None:
            docs = ref  # the reference vectors are this very path's output
        else:
            docs = enc.encode(texts)
        qv = enc.encode([q.text for q in qs], kind="query")
        sims = qv @ docs.T
        top = np.argsort(-sims, axis=1)[:, :100]
        run = {q.id: {ids[j]: float(sims[i, j]) for j in top[i]} for i, q in enumerate(qs)}
        score = score_run(run, ds.qrels, [nDCG @ 10]).mean["nDCG@10"]
        entry = {"ndcg@10": round(score, 4), "encode_s": round(time.perf_counter() - t0, 1)}
        if ref is not None:
            entry["max_cosine_error"] = float(np.max(1 - np.sum(docs * ref, axis=1)))
        res[p] = entry
    for p in precisions:
        if p != "fp32" and "fp32" in res:
            res[f"{p}_minus_fp32"] = round(res[p]["ndcg@10"] - res["fp32"]["ndcg@10"], 4)
    return res


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--docs", type=int, default=500)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--queries", type=int, default=50)
    ap.add_argument("--quality", default="adi,med,cisi,cranfield,scifact")
    ap.add_argument("--skip-speed", action="store_true")
    ap.add_argument("--precisions", default="fp32,bf16,onnx-fp32,onnx-int8",
                    help="ragnodes encoders: fp32 | bf16 (torch) | onnx-fp32 | onnx-int8")
    args = ap.parse_args()
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import torch

    torch.set_num_threads(args.threads)
    from evals.datasets import load_beir

    out: dict = {"threads": args.threads, "torch": torch.__version__,
                 "machine": {"cpus": os.cpu_count(), "load_avg_1m": round(os.getloadavg()[0], 1)},
                 "note": "shared machine: compare the ratios, measured side by side"}
    if not args.skip_speed:
        ds = load_beir(DATA / "scifact")
        rng = np.random.default_rng(0)
        pick = rng.choice(len(ds.corpus), size=min(args.docs, len(ds.corpus)), replace=False)
        texts = [ds.corpus[int(i)].full_text for i in pick]
        queries = [q.text for q in ds.queries[: args.queries]]
        ours32, enc = _ours("fp32")
        n_tok = sum(len(x) for x in enc.tokenize(texts)["input_ids"])
        systems = {"st_fp32": _st_encoder("fp32"), "ragnodes_fp32": ours32}
        if "bf16" in args.precisions.split(","):  # its peer only when bf16 is measured
            systems["st_bf16"] = _st_encoder("bf16")
        for spec in [p for p in args.precisions.split(",") if p and p != "fp32"]:
            systems[f"ragnodes_{spec.replace('-', '_')}"] = _ours(spec)[0]
        out["speed"] = {"docs": len(texts), "tokens": n_tok}
        out["speed"].update(speed(systems, texts, n_tok, args.rounds, queries))
        a = systems["st_fp32"](texts[:64])
        for name, fn in systems.items():
            cos = np.sum(a * fn(texts[:64]), axis=1)
            out["speed"][name]["max_cosine_error_vs_st_fp32"] = float(np.max(1 - cos))
    out["quality"] = {}
    for name in [x for x in args.quality.split(",") if x]:
        # SciFact is measured only with its reference vectors (two full encodes take too long)
        if name == "scifact" and not (REF / "scifact.npy").exists():
            out["quality"][name] = f"skipped: no fp32 reference vectors in {REF}"
            continue
        if (DATA / name / "corpus.jsonl").exists():
            out["quality"][name] = quality(name, args.precisions.split(","))
            print(json.dumps({name: out["quality"][name]}), flush=True)
    out["machine"]["load_avg_1m_end"] = round(os.getloadavg()[0], 1)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
