"""Time our metric computation against pytrec_eval on the same runs; prints JSON.

Runs: a BM25 run of depth 1000 over SciFact's 300 test queries (``../shared/datasets``; skipped
when absent) and a large random run with graded qrels and tied scores. Both sides compute the
same nine measures; pytrec_eval's time includes building its evaluator from the qrels, as ours
includes joining the qrels. Best of ``--repeat`` runs. ``ratio`` = pytrec_eval time / ours
(> 1: we are faster). Values are checked to agree to 1e-9 before timing.

    python bench/bench_metrics.py [--queries 2000] [--depth 1000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from evals.measures import AP, RR, P, R, Rprec, Success, nDCG, score_run  # noqa: E402

PAIRS = [
    (nDCG @ 10, "ndcg_cut_10"),
    (nDCG @ 100, "ndcg_cut_100"),
    (P @ 10, "P_10"),
    (R @ 100, "recall_100"),
    (R @ 1000, "recall_1000"),
    (AP, "map"),
    (RR, "recip_rank"),
    (Rprec, "Rprec"),
    (Success @ 10, "success_10"),
]
DATA = Path(__file__).resolve().parents[2] / "shared" / "datasets"


def random_run(n_q: int, depth: int, seed: int = 0, ties: bool = False) -> tuple[dict, dict]:
    """Random scores (``ties``: rounded to 3 decimals, so most scores tie with another)."""
    rng = random.Random(seed)
    docs = [f"doc{i}" for i in range(50_000)]
    run, qrels = {}, {}
    for q in range(n_q):
        qid = str(q)
        ranked = rng.sample(docs, depth)
        run[qid] = {d: round(rng.random(), 3) if ties else rng.random() for d in ranked}
        judged = rng.sample(ranked[:200], 20) + rng.sample(docs, 20)
        qrels[qid] = {d: rng.randint(0, 3) for d in judged}
    return run, qrels


def scifact_bm25(depth: int) -> tuple[dict, dict] | None:
    if not (DATA / "scifact").is_dir():
        return None
    from evals.datasets import load_beir
    from evals.harness import evaluate
    from retrievers import BM25Retriever

    ds = load_beir(DATA / "scifact")
    res = evaluate(BM25Retriever(), ds, ["ndcg@10"], k=depth, index=True, progress=False)
    return res.runs["retrieval"], ds.qrels


def best_of(fn, repeat: int) -> tuple[float, float]:
    """Best wall-clock and best CPU (process) time over ``repeat`` calls."""
    wall, cpu = [], []
    for _ in range(repeat):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return min(wall), min(cpu)


def compare(name: str, run: dict, qrels: dict, repeat: int) -> dict:
    import pytrec_eval

    keys = {k for _, k in PAIRS}
    measures = [m for m, _ in PAIRS]

    def theirs() -> dict:
        return pytrec_eval.RelevanceEvaluator(qrels, keys).evaluate(run)

    def ours():  # noqa: ANN202
        return score_run(run, qrels, measures)

    ref, got = theirs(), ours()
    worst = max(abs(got.per_query[str(m)][q] - ref[q][k]) for m, k in PAIRS for q in ref)
    if worst > 1e-9:
        raise SystemExit(f"{name}: values differ from pytrec_eval by {worst}")
    (w_theirs, c_theirs), (w_ours, c_ours) = best_of(theirs, repeat), best_of(ours, repeat)
    return {
        "run": name,
        "queries": len(run),
        "entries": sum(len(r) for r in run.values()),
        "ours_s": round(w_ours, 4),
        "pytrec_eval_s": round(w_theirs, 4),
        "ratio": round(w_theirs / w_ours, 3),
        "ours_cpu_s": round(c_ours, 4),
        "pytrec_eval_cpu_s": round(c_theirs, 4),
        "cpu_ratio": round(c_theirs / c_ours, 3),
        "max_abs_diff": worst,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--queries", type=int, default=2000)
    ap.add_argument("--depth", type=int, default=1000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    rows = []
    real = scifact_bm25(args.depth)
    if real is not None:
        rows.append(compare("scifact-bm25", *real, args.repeat))
    rows.append(compare("random", *random_run(args.queries, args.depth), args.repeat))
    tied = random_run(args.queries, args.depth, ties=True)
    rows.append(compare("random-3-decimal-ties", *tied, args.repeat))
    print(json.dumps({"measures": [str(m) for m, _ in PAIRS], "runs": rows}, indent=2))


if __name__ == "__main__":
    main()
