"""Synthetic vs real qrels on SciFact, and interpolation vs extrapolation.

1. SmolLM2-135M writes one question for each of ``--n-docs`` seeded-random SciFact abstracts
   (1 thread; resumable under ``--work``). Two synthetic sets are built from the same replies:
   ``clean+dedup`` (no retrieval filter) and ``roundtrip`` (BM25 must rank the source in its top
   ``--roundtrip-k``; note this filter is biased towards BM25 by construction).
2. Five systems (BM25 bm25s-style, BM25 Elasticsearch-like, MiniLM dense from the cached index,
   RRF hybrids of each BM25 with dense) are scored by nDCG@10 on the real test qrels and on each
   synthetic set; Kendall's tau between the system orderings (5 systems = 10 pairs, so tau moves
   in steps of 0.2 and a single swap costs 0.2).
3. Interpolation vs extrapolation (Zhan et al. 2022): the 300 real test claims are split by
   their max MiniLM cosine to the 809 train claims (top vs bottom half), nDCG@10 on each part.

    OMP_NUM_THREADS=1 python bench/bench_synthetic.py [--n-docs 160] [--work /tmp/synth]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SCIFACT = ROOT.parent / "shared" / "datasets" / "scifact"


def systems(corpus):
    from rag.core.models import cache_dir
    from rag.index.persist import load_retriever
    from retrievers import BM25Retriever, HybridRetriever

    path = cache_dir() / "bench" / "scifact-minilm-auto"
    if not (path / "config.json").exists():
        raise SystemExit(f"no cached MiniLM index at {path}; run bench/bench_reference.py first")
    dense = load_retriever(path)
    bm25 = BM25Retriever().index(corpus)
    es = BM25Retriever(k1=1.2, b=0.75, stemmer=None, stopwords=None).index(corpus)
    out = {"bm25": bm25, "bm25_es_like": es, "dense": dense}
    for name, sparse in (("hybrid", bm25), ("hybrid_es_like", es)):
        h = HybridRetriever([sparse, dense])
        h._docs = dict(sparse.documents)  # children are already indexed
        out[name] = h
    return out


def build_sets(corpus, bm25, args) -> dict:
    from evals.synthetic import SynthConfig, generate_synthetic
    from rag.core.llm import get_llm

    work = Path(args.work)
    plain = work / "clean_dedup"
    cfg = SynthConfig(n_docs=args.n_docs, seed=args.seed, roundtrip_k=0, batch_size=4)
    t = time.perf_counter()
    lm = get_llm("transformers", "smollm2-135m", "cpu").load()
    rep_plain = generate_synthetic(corpus, lm, plain, cfg, generator_name="smollm2-135m")
    gen_s = time.perf_counter() - t
    rt = work / "roundtrip"
    rt.mkdir(parents=True, exist_ok=True)
    shutil.copy(plain / "generated.jsonl", rt / "generated.jsonl")  # same replies, no regeneration
    cfg_rt = SynthConfig(n_docs=args.n_docs, seed=args.seed, roundtrip_k=args.roundtrip_k)
    rep_rt = generate_synthetic(corpus, lm, rt, cfg_rt, retriever=bm25,
                                generator_name="smollm2-135m")
    from dataclasses import asdict

    return {"clean_dedup": (plain, asdict(rep_plain)), "roundtrip": (rt, asdict(rep_rt)),
            "generation_s": round(gen_s, 1)}


def kendall(a: dict, b: dict) -> float:
    from scipy.stats import kendalltau

    names = sorted(a)
    return round(float(kendalltau([a[n] for n in names], [b[n] for n in names]).statistic), 4)


def split_block(real, results_real, dense) -> dict:
    from evals.datasets import read_beir_qrels, read_queries
    from evals.splits import score_split, similarity_split

    train_qrels = read_beir_qrels(SCIFACT / "qrels" / "train.tsv")
    texts = {q.id: q.text for q in read_queries(SCIFACT / "queries.jsonl")}
    train = [q for q in train_qrels if q in texts]
    enc = dense.encoder
    test_ids = [q.id for q in real.queries]
    qv = enc.encode_queries([texts[q] for q in test_ids])
    rv = enc.encode_queries([texts[q] for q in train])
    split = similarity_split(test_ids, qv, rv, fraction=0.5, reference_ids=train)
    out = {"reference": f"{len(train)} scifact train claims", **split.summary(), "nDCG@10": {}}
    for name, res in results_real.items():
        out["nDCG@10"][name] = score_split(res.per_query["nDCG@10"], split)
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n-docs", type=int, default=160)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--roundtrip-k", type=int, default=5)
    ap.add_argument("--work", default="/tmp/ragnodes-synth-scifact")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
    from evals import evaluate, load_beir

    real = load_beir(SCIFACT)
    sys_ = systems(real.corpus)
    sets = build_sets(real.corpus, sys_["bm25"], args)
    print("generated", file=sys.stderr, flush=True)
    res_real = {n: evaluate(r, real, ["nDCG@10"], k=100, progress=False) for n, r in sys_.items()}
    real_ndcg = {n: round(r.aggregate["nDCG@10"], 4) for n, r in res_real.items()}
    report: dict = {
        "n_docs_sampled": args.n_docs, "seed": args.seed, "generator": "smollm2-135m (greedy)",
        "generation_s": sets["generation_s"], "real": {"n_queries": len(real.queries),
                                                       "nDCG@10": real_ndcg},
        "synthetic": {},
    }
    for key in ("clean_dedup", "roundtrip"):
        path, rep = sets[key]
        syn = load_beir(path)
        ndcg = {n: round(evaluate(r, syn, ["nDCG@10"], k=100, progress=False)
                         .aggregate["nDCG@10"], 4) for n, r in sys_.items()}
        report["synthetic"][key] = {
            "filter_counts": {k: rep[k] for k in ("sampled", "invalid", "roundtrip_failed",
                                                   "duplicates", "kept")},
            "nDCG@10": ndcg,
            "pairs_real_vs_synthetic": {n: [real_ndcg[n], ndcg[n]] for n in ndcg},
            "kendall_tau_vs_real": kendall(real_ndcg, ndcg),
            "examples": [q.text for q in syn.queries[:5]],
        }
    report["interpolation_vs_extrapolation"] = split_block(real, res_real, sys_["dense"])
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
