"""Encoders side by side in one run: ragnodes (fp32 default, bf16 fast mode) against
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
from pathlib import Path

import numpy as np
from locations import DATA, cache

REF = cache("minilm")


def _st_encoder(precision: str):
    from sentence_transformers import SentenceTransformer

    from rag.models import resolve_model

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


def _ort_encoder(quantize: bool, workdir: str, threads: int):
    """ONNX Runtime on an ONNX export of the same model (fp32, or dynamic int8 weights)."""
    import onnxruntime as ort
    import torch

    from rag.models import load_hf

    tok, net, _ = load_hf("minilm", "AutoModel", "cpu", attn_implementation="eager")
    path = Path(workdir) / "minilm.onnx"
    if not path.exists():
        dummy = tok(["a b c", "d"], padding=True, return_tensors="pt")
        names = ["input_ids", "attention_mask", "token_type_ids"]
        dyn = {n: {0: "batch", 1: "seq"} for n in names}

        class Wrapped(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.net = net

            def forward(self, input_ids, attention_mask, token_type_ids):  # noqa: ANN001
                return self.net(
                    input_ids=input_ids,
                    attention_mask=attention_mask,
                    token_type_ids=token_type_ids,
                ).last_hidden_state

        torch.onnx.export(
            Wrapped().eval(),
            tuple(dummy[n] for n in names),
            str(path),
            input_names=names,
            output_names=["last_hidden_state"],
            dynamic_axes={**dyn, "last_hidden_state": {0: "batch", 1: "seq"}},
            dynamo=False,
        )
    if quantize:
        from onnxruntime.quantization import QuantType, quantize_dynamic

        qpath = path.with_name("minilm.int8.onnx")
        if not qpath.exists():
            quantize_dynamic(str(path), str(qpath), weight_type=QuantType.QInt8, per_channel=True)
        path = qpath
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])

    def encode(texts: list[str]) -> np.ndarray:
        enc = tok(list(texts), truncation=True, max_length=256)
        order = sorted(range(len(texts)), key=lambda i: -len(enc["input_ids"][i]))
        out = np.zeros((len(texts), 384), np.float32)
        for s in range(0, len(order), 32):
            pos = order[s : s + 32]
            b = tok.pad({k: [enc[k][i] for i in pos] for k in enc.keys()}, return_tensors="np")
            feeds = {
                k: b[k].astype(np.int64) for k in ("input_ids", "attention_mask", "token_type_ids")
            }
            h = sess.run(None, feeds)[0]
            m = b["attention_mask"][..., None].astype(np.float32)
            v = (h * m).sum(1) / np.maximum(m.sum(1), 1e-9)
            out[pos] = v / np.linalg.norm(v, axis=1, keepdims=True)
        return out

    return encode


def _ours(precision: str):
    from rag.encoders import TransformerEncoder

    enc = TransformerEncoder(precision=precision, cache=None).load()
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
    from rag.encoders import TransformerEncoder

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
        enc = TransformerEncoder(precision=p, cache=None)
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
    if "fp32" in res and "bf16" in res:
        res["bf16_minus_fp32"] = round(res["bf16"]["ndcg@10"] - res["fp32"]["ndcg@10"], 4)
    return res


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--docs", type=int, default=500)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--queries", type=int, default=50)
    ap.add_argument("--quality", default="adi,med,cisi,cranfield,scifact")
    ap.add_argument("--skip-speed", action="store_true")
    ap.add_argument("--ort", default="", help="folder with onnxruntime (pip --target) to add")
    args = ap.parse_args()
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import torch

    torch.set_num_threads(args.threads)
    from evals.datasets import load_beir

    out: dict = {"threads": args.threads, "torch": torch.__version__}
    if not args.skip_speed:
        ds = load_beir(DATA / "scifact")
        rng = np.random.default_rng(0)
        pick = rng.choice(len(ds.corpus), size=min(args.docs, len(ds.corpus)), replace=False)
        texts = [ds.corpus[int(i)].full_text for i in pick]
        queries = [q.text for q in ds.queries[: args.queries]]
        ours32, enc = _ours("fp32")
        ours16, _ = _ours("bf16")
        n_tok = sum(len(x) for x in enc.tokenize(texts)["input_ids"])
        systems = {
            "st_fp32": _st_encoder("fp32"),
            "st_bf16": _st_encoder("bf16"),
            "ragnodes_fp32": ours32,
            "ragnodes_bf16": ours16,
        }
        if args.ort:
            import sys
            import tempfile

            sys.path.append(args.ort)  # a --target folder with onnxruntime, onnx, onnxscript
            work = tempfile.mkdtemp(prefix="ort")
            try:
                systems["ort_fp32"] = _ort_encoder(False, work, args.threads)
                systems["ort_int8_dynamic"] = _ort_encoder(True, work, args.threads)
            except Exception as e:  # noqa: BLE001 - report, keep measuring the others
                out["ort_error"] = f"{type(e).__name__}: {e}"[:300]
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
            out["quality"][name] = quality(name, ["fp32", "bf16"])
            print(json.dumps({name: out["quality"][name]}), flush=True)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
