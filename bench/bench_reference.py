"""Reference figures: BM25, dense MiniLM and hybrid (RRF) on the shared collections.

Prints one JSON object: nDCG@10, R@100, RR@10 per system and collection, the significance of
hybrid against each single retriever (two-sided randomisation test, Holm-corrected), and, for
scifact, the published references (MiniLM 0.6451 by MTEB; BM25 0.6762 by bm25s/Pyserini settings,
and BEIR's Elasticsearch figure 0.665 next to our Elasticsearch-like BM25 configuration).

    python bench/bench_reference.py [--datasets scifact,adi] [--precision fp32|bf16]

Dense indexes are cached under ``$RAGNODES_CACHE/bench`` so a re-run only pays for queries.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "2")
ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "datasets"
MEASURES = ["nDCG@10", "R@100", "RR@10"]


def dense_index(name: str, ds, precision: str):
    from rag.encoders import TransformerEncoder
    from rag.models import cache_dir
    from rag.persist import load_retriever
    from retrievers import DenseRetriever

    path = cache_dir() / "bench" / f"{name}-minilm-{precision}"
    if (path / "manifest.json").exists():  # a saved index folder (rag.index)
        return load_retriever(path), None
    r = DenseRetriever(encoder=TransformerEncoder(precision=precision), show_progress=True)
    t = time.perf_counter()
    r.index(ds.corpus)
    took = time.perf_counter() - t
    from rag.index import write_index
    write_index(r, path)
    return r, took


def cached_hybrid(ds, precision: str = "auto"):
    """(bm25, dense, hybrid) over ``ds``; the dense index is cached by :func:`dense_index`."""
    from retrievers import BM25Retriever, HybridRetriever

    bm25 = BM25Retriever().index(ds.corpus)
    dense, _ = dense_index(ds.name, ds, precision)
    hybrid = HybridRetriever([bm25, dense])
    hybrid._docs = dict(bm25.documents)  # children are already indexed
    return bm25, dense, hybrid


def run_one(name: str, precision: str) -> dict:
    from evals import compare_systems, evaluate, load_beir
    from retrievers import BM25Retriever, HybridRetriever

    ds = load_beir(SHARED / name)
    bm25 = BM25Retriever().index(ds.corpus)
    dense, index_s = dense_index(name, ds, precision)
    hybrid = HybridRetriever([bm25, dense])
    hybrid._docs = dict(bm25.documents)  # children are already indexed
    systems = {"bm25": bm25, "dense": dense, "hybrid": hybrid}
    if name == "scifact":
        es = BM25Retriever(k1=1.2, b=0.75, stemmer=None, stopwords=None).index(ds.corpus)
        systems["bm25_es_like"] = es
    results = {s: evaluate(r, ds, MEASURES, k=100, progress=False) for s, r in systems.items()}
    out: dict = {
        "n_docs": len(ds.corpus),
        "n_queries": len(ds.queries),
        "dense_index_s": index_s,
        "systems": {
            s: {**{m: round(v, 4) for m, v in r.aggregate.items()},
                "p50_ms": round(r.latency.p50_ms, 2)}
            for s, r in results.items()
        },
    }
    per_query = {s: results[s].per_query for s in ("bm25", "dense", "hybrid")}
    cmp = compare_systems(per_query, baseline="hybrid")
    out["hybrid_vs"] = [
        {"system": c.system, "measure": c.measure, "delta_vs_hybrid": round(c.delta, 4),
         "p_holm": round(c.p_adjusted, 5), "significant": c.significant}
        for c in cmp
    ]
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--datasets", default="scifact,cranfield,cisi,med,adi")
    ap.add_argument("--precision", default="fp32")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
    report = {"precision": args.precision, "datasets": {}}
    for name in args.datasets.split(","):
        report["datasets"][name] = run_one(name, args.precision)
        print(f"done {name}", file=sys.stderr, flush=True)
    sf = report["datasets"].get("scifact")
    if sf:
        report["scifact_reference_check"] = {
            "dense_ndcg10": sf["systems"]["dense"]["nDCG@10"], "dense_reference": 0.6451,
            "bm25_ndcg10": sf["systems"]["bm25"]["nDCG@10"], "bm25_reference_bm25s": 0.6762,
            "bm25_es_like_ndcg10": sf["systems"]["bm25_es_like"]["nDCG@10"],
            "bm25_reference_beir_es": 0.665,
        }
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
