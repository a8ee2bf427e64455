"""Rerankers on the shared judged collections: nDCG@10 before/after, pairs/s, relevance filtering.

    python bench/bench_rerankers.py                     # scifact, prints JSON
    python bench/bench_rerankers.py --datasets scifact,adi --llm-queries 20

First stages: BM25 top-100 and hybrid (BM25 + MiniLM, RRF) top-100. Rerankers run for real here:
MiniLM embedding rescoring and MiniLM late interaction (MaxSim) on every test query; SmolLM2-135M
pointwise and listwise (window, full list) on the first ``--llm-queries`` queries over the top
``--llm-depth`` candidates only (CPU generation is slow), with nDCG@10 before/after on that same
subset. The relevance filter is fitted on scifact's train queries and scored on its test queries.
nDCG@10 is computed with pytrec_eval (trec_eval's definition).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))  # sibling benches

from evals.datasets import load_beir  # noqa: E402
from rag.core.types import Ranking  # noqa: E402
from rerankers import (  # noqa: E402
    EmbeddingReranker,
    LLMListwiseReranker,
    LLMPointwiseReranker,
    RelevanceFilter,
    set_quality,
)
from rerankers.relevance_filter import _pick_threshold  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / "shared" / "datasets"


def ndcg10(rankings: list[Ranking], qrels: dict[str, dict[str, int]]) -> float:
    import pytrec_eval

    run = {r.query.id: {h.id: float(h.score) for h in r.hits} for r in rankings}
    judged = {q: qrels[q] for q in run if q in qrels}
    ev = pytrec_eval.RelevanceEvaluator(judged, {"ndcg_cut.10"})
    scores = [v["ndcg_cut_10"] for v in ev.evaluate(run).values()]
    return round(float(np.mean(scores)), 4) if scores else float("nan")


def timed_rerank(reranker, rankings: list[Ranking]) -> tuple[list[Ranking], float]:
    reranker.load()
    t = time.perf_counter()
    out = reranker.rerank_batch(rankings)
    dt = time.perf_counter() - t
    pairs = sum(len(r) for r in rankings)
    return out, round(pairs / dt, 1) if dt else float("inf")


def first_stages(ds, depth: int) -> tuple[dict[str, list[Ranking]], object, object]:
    """BM25 and hybrid (BM25 + MiniLM, RRF) top-``depth`` rankings of ``ds.queries``.

    The MiniLM index is the one bench_reference.py caches; returns (rankings, hybrid, dense)."""
    from bench_reference import cached_hybrid

    bm25, dense, hybrid = cached_hybrid(ds)
    return {
        "bm25": bm25.retrieve_batch(ds.queries, k=depth),
        "hybrid": hybrid.retrieve_batch(ds.queries, k=depth),
    }, hybrid, dense


def cheap_rerankers(ds, dense) -> dict[str, object]:
    """MiniLM rescoring and late interaction, their document caches primed from the cached
    indexes built by the same encoders (so every test query can be reranked here)."""
    ids = [d.id for d in ds.corpus]
    emb = EmbeddingReranker(cache_size=len(ids))
    emb.load()
    emb.cache_vectors(ds.corpus, dense.store.vectors(ids))
    out: dict[str, object] = {"embedding_minilm": emb}
    try:
        from bench_multivector import token_vectors

        from rerankers import LateInteractionReranker
    except ImportError as e:  # the multivector package is optional for this bench
        print(f"late interaction skipped: {e}", file=sys.stderr)
        return out
    li = LateInteractionReranker(cache_size=len(ids))
    li.load()
    li.cache_vectors(ds.corpus, token_vectors(ds.name, li.encoder, ds.corpus).get(ids))
    out["late_interaction_minilm"] = li
    return out


def cold_pairs_per_s(reranker, rankings: list[Ranking]) -> float:
    """Throughput of a fresh instance (nothing cached: documents are encoded), on ``rankings``."""
    fresh = type(reranker).from_config(reranker.to_config())
    return timed_rerank(fresh, rankings)[1]


def llm_rerankers() -> dict[str, object]:
    return {
        "smollm2_pointwise": LLMPointwiseReranker(backend="transformers", batch_size=10),
        "smollm2_listwise_window5_step3": LLMListwiseReranker(
            backend="transformers", window=5, step=3, batch_size=5
        ),
        "smollm2_listwise_full_list": LLMListwiseReranker(
            backend="transformers", full_list=True, batch_size=5
        ),
    }


def bench_dataset(ds, args) -> dict[str, object]:
    stages, _, dense = first_stages(ds, args.depth)
    report: dict[str, object] = {"queries": len(ds.queries), "docs": len(ds.corpus)}
    cheap = cheap_rerankers(ds, dense)
    llms = llm_rerankers() if args.llm_queries > 0 and ds.name in args.llm_sets.split(",") else {}
    for stage, rankings in stages.items():
        row: dict[str, object] = {"before": ndcg10(rankings, ds.qrels)}
        for label, rr in cheap.items():
            out, _ = timed_rerank(rr, rankings)
            cold = cold_pairs_per_s(rr, rankings[: args.cold_queries])
            row[label] = {"ndcg@10": ndcg10(out, ds.qrels), "pairs_per_s_cold": cold}
        if llms:
            sub = [r.top(args.llm_depth) for r in rankings[: args.llm_queries]]
            row["llm_subset"] = {
                "queries": len(sub),
                "depth": args.llm_depth,
                "before": ndcg10(sub, ds.qrels),
            }
            for label, rr in llms.items():
                out, pps = timed_rerank(rr, sub)
                entry = {"ndcg@10": ndcg10(out, ds.qrels), "pairs_per_s": pps}
                if isinstance(rr, LLMListwiseReranker):
                    ps = [o.provenance for o in out]
                    fixed = sum(int(p.get("repaired_windows", 0)) for p in ps)
                    windows = sum(int(p.get("windows", 0)) for p in ps)
                    entry["repaired_windows"] = f"{fixed}/{windows}"
                    entry["stage"] = out[0].stage if out else ""
                row["llm_subset"][label] = entry
                print(ds.name, stage, label, json.dumps(entry), file=sys.stderr, flush=True)
        report[stage] = row
    return report


def bench_filter(args) -> dict[str, object]:
    """Fit on scifact train (hybrid top-100 rescored by MiniLM), score on scifact test."""
    path = DATA / "scifact"
    train, test = load_beir(path, split="train"), load_beir(path, split="test")
    _, hybrid, dense = first_stages(test, args.depth)
    emb = cheap_rerankers(test, dense)["embedding_minilm"]
    tr = emb.rerank_batch(hybrid.retrieve_batch(train.queries, k=args.depth))
    te = emb.rerank_batch(hybrid.retrieve_batch(test.queries, k=args.depth))
    out: dict[str, object] = {"train_queries": len(tr), "test_queries": len(te)}
    for label, target in (("calibrated_f1", None), ("calibrated_p>=0.5", 0.5)):
        f = RelevanceFilter().fit(tr, train.qrels, target_precision=target)
        q = set_quality(f.rerank_batch(te), test.qrels)
        out[label] = {"threshold": round(f.threshold, 4), **_round(q)}
        f10 = RelevanceFilter(weights=f.weights, threshold=f.threshold, max_k=10)
        out[label + "_max10"] = _round(set_quality(f10.rerank_batch(te), test.qrels))
    # baseline: one global threshold on the raw cosine, fitted the same way (no per-query mapping)
    raw = np.concatenate([r.scores for r in tr])
    y = np.array([float(train.qrels[r.query.id].get(h.id, 0) > 0) for r in tr for h in r.hits])
    n_rel = sum(sum(g > 0 for g in train.qrels[r.query.id].values()) for r in tr)
    t = _pick_threshold(raw, y, n_rel, None)
    cut = [r.model_copy(update={"hits": tuple(h for h in r.hits if h.score >= t)}) for r in te]
    out["raw_cosine_f1"] = {"threshold": round(t, 4), **_round(set_quality(cut, test.qrels))}
    for k in (1, 3, 10):
        out[f"top{k}"] = _round(set_quality([r.top(k) for r in te], test.qrels))
    return out


def _round(d: dict[str, float]) -> dict[str, float]:
    return {k: round(v, 4) for k, v in d.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--datasets", default="scifact")
    ap.add_argument("--depth", type=int, default=100)
    ap.add_argument("--llm-queries", type=int, default=20)
    ap.add_argument("--llm-depth", type=int, default=10)
    ap.add_argument("--llm-sets", default="scifact", help="collections the LLMs run on")
    ap.add_argument("--cold-queries", type=int, default=10, help="queries timed with no cache")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--no-filter", action="store_true")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    result: dict[str, object] = {
        "first_stage_depth": args.depth,
        "llm_subset": f"first {args.llm_queries} queries, top {args.llm_depth} candidates",
        "threads": args.threads,
    }
    for name in args.datasets.split(","):
        if not (DATA / name).is_dir():
            result[name] = "skipped: dataset not found"
            continue
        result[name] = bench_dataset(load_beir(DATA / name), args)
        print(json.dumps({name: result[name]}), file=sys.stderr, flush=True)
    if not args.no_filter and (DATA / "scifact").is_dir():
        result["relevance_filter_scifact"] = bench_filter(args)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
