"""Digests of full-precision rankings, to prove a refactor changed no result.

For each collection: BM25, dense MiniLM (the index cached by ``bench_reference.dense_index``),
hybrid RRF, hybrid CombSUM (weights 0.7/0.3, depth 200), rerank fusion (RM3 sharing BM25's index,
BM25, dense; CombSUM, depth 50), think in ``query`` mode over the hybrid (no generation) and a
pipeline over the hybrid, each at k=10 and k=100. A digest is the sha256 of every query's ids,
scores (``float.hex``, so bit-exact) and stage. Run it on two checkouts and diff the JSON:

    PYTHONPATH=. python bench/bench_rankings_digest.py --datasets adi,med,cisi,cranfield

The composite refactor (``retrievers/composite.py``) gave the same 52 digests on adi, med, cisi and
cranfield before and after (docs/architecture.md).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "datasets"


def digest(rows: list) -> str:
    return hashlib.sha256(json.dumps(rows).encode()).hexdigest()[:16]


def systems(ds, precision: str) -> dict:
    from bench_reference import dense_index

    from rag.generators import TransformersGenerator
    from retrievers import BM25Retriever, HybridRetriever, RerankFusionRetriever, RM3Retriever
    from retrievers.think import ThinkRetriever

    bm25 = BM25Retriever().index(ds.corpus)
    dense, _ = dense_index(ds.name, ds, precision)
    docs = dict(bm25.documents)  # the children are already indexed: share one table
    hybrid = HybridRetriever([bm25, dense])
    score = HybridRetriever([dense, bm25], method="score", weights=[0.7, 0.3], depth=200)
    fusion = RerankFusionRetriever(
        [RM3Retriever(fb_docs=3, fb_terms=5), bm25, dense],
        method="score", weights=[0.5, 1.0, 1.0], depth=50,
    )
    think = ThinkRetriever(hybrid, TransformersGenerator(), mode="query")
    for r in (hybrid, score, fusion, think):
        r._share_documents(docs)
    return {"bm25": bm25, "dense": dense, "hybrid": hybrid, "hybrid_score": score,
            "rerank_fusion": fusion, "think_query": think}


def extra_systems(bm25) -> dict:
    """Parents grouped by RRF over BM25 (the grouping's reciprocal-rank fusion)."""
    from retrievers.parents import ParentRetriever

    return {f"parents_{how}": ParentRetriever(bm25, how=how) for how in ("rrf", "max")}


def late_interaction_digests(bm25, qs) -> dict[str, str]:
    """The late-interaction reranker (MaxSim over MiniLM token vectors) on BM25's top 30 of
    ``qs`` (the first 5 queries): vectors encoded per call (``li_cache``) and read from an
    index-time token store (``li_store``). Built from the registry, so the digest runs before
    and after a move."""
    from rag.core.nodes import Node

    first = bm25.retrieve_batch(qs, k=30)
    out = {}
    rr = Node.from_config({"type": "late_interaction", "cache_size": 0})
    out["li_cache@10"] = digest([
        [x.query.id, list(x.ids), [float(v).hex() for v in x.scores]]
        for x in rr.rerank_batch(first, k=10)
    ])
    store = Node.from_config({"type": "late_interaction", "cache_size": 0})
    docs = {h.id: h.document for r in first for h in r.hits}
    store.index_documents(list(docs.values()))
    out["li_store@10"] = digest([
        [x.query.id, list(x.ids), [float(v).hex() for v in x.scores]]
        for x in store.rerank_batch(first, k=10)
    ])
    return out


def run_one(name: str, precision: str) -> dict[str, str]:
    from evals import load_beir
    from rag.pipeline import Pipeline

    ds = load_beir(SHARED / name)
    qs = list(ds.queries)
    out = {}
    found = systems(ds, precision)
    for s, r in found.items():
        for k in (10, 100):
            out[f"{s}@{k}"] = digest([
                [x.query.id, list(x.ids), [float(v).hex() for v in x.scores], x.stage]
                for x in r.retrieve_batch(qs, k=k)
            ])
    for s, r in extra_systems(found["bm25"]).items():
        for k in (10, 100):
            out[f"{s}@{k}"] = digest([
                [x.query.id, list(x.ids), [float(v).hex() for v in x.scores], x.stage]
                for x in r.retrieve_batch(qs, k=k)
            ])
    out.update(late_interaction_digests(found["bm25"], qs[:5]))
    pipe = Pipeline(retriever=found["hybrid"], k=10)
    out["pipeline_hybrid@10"] = digest(
        [[list(x.ids), [float(v).hex() for v in x.scores]] for x in pipe.search_batch(qs)]
    )
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--datasets", default="adi,med,cisi,cranfield")
    ap.add_argument("--precision", default="fp32")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
    report = {}
    for name in args.datasets.split(","):
        report[name] = run_one(name, args.precision)
        print(f"done {name}", file=sys.stderr, flush=True)
    print(json.dumps(report, indent=1, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
