"""Multi-vector retrieval benchmark: exact MaxSim vs MUVERA FDE (alone and + MaxSim rerank) vs
Qdrant multivector, and MaxSim rerank of BM25 top-100, with the packaged MiniLM token vectors.

Prints one JSON object. Per collection: nDCG@10 / Recall@100 (pytrec_eval, i.e. trec_eval),
query latency p50 (ms, one query at a time, query token encoding excluded: it is the same for
every method and reported separately), index bytes per document, and for the BM25 rerank the
nDCG@10 change with paired t-test and randomisation-test p-values (``evals.stats``).

    python bench/bench_multivector.py [--sets adi med] [--latency-queries 30] [--qdrant-queries 10]

Document token vectors are encoded once per collection and cached under ``$RAGNODES_CACHE``
(default ``~/.cache/ragnodes``)/bench_multivector; every method reuses them.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from evals.datasets import load_beir  # noqa: E402
from evals.stats import paired_t_test, randomization_test  # noqa: E402
from rag.core.models import cache_dir  # noqa: E402
from retrievers.multivector import (  # noqa: E402
    MuveraFDE,
    QdrantMultiVectorStore,
    TokenEncoder,
    TokenStore,
)
from retrievers.stores.exact import ExactStore  # noqa: E402

DATA = ROOT.parent / "shared" / "datasets"
SETS = ("adi", "med", "cisi", "cranfield", "scifact")
FDE_SETTINGS = (  # (k_sim, d_proj, r_reps, d_final)
    (4, 16, 10, None),   # Weaviate's defaults: 2,560 dims
    (5, 16, 20, None),   # 10,240 dims
    (5, 32, 20, None),   # paper-scale: 20,480 dims
)
CANDIDATES = 200


def evaluate(qrels: dict, run: dict[str, list[tuple[str, float]]]) -> dict[str, dict[str, float]]:
    import pytrec_eval

    r = {q: {d: float(s) for d, s in hits} for q, hits in run.items()}
    for q in qrels:
        r.setdefault(q, {})
    ev = pytrec_eval.RelevanceEvaluator(qrels, {"ndcg_cut.10", "recall.100"}).evaluate(r)
    return {q: {"ndcg10": v["ndcg_cut_10"], "recall100": v["recall_100"]} for q, v in ev.items()}


def summary(per_q: dict[str, dict[str, float]]) -> dict[str, float]:
    return {
        m: round(float(np.mean([v[m] for v in per_q.values()])), 4) for m in ("ndcg10", "recall100")
    }


def p50_ms(fn, items) -> float:  # noqa: ANN001
    times = []
    for x in items:
        t = time.perf_counter()
        fn(x)
        times.append(time.perf_counter() - t)
    return round(1000 * float(np.median(times)), 2)


def token_vectors(name: str, enc: TokenEncoder, docs) -> TokenStore:  # noqa: ANN001
    folder = cache_dir() / "bench_multivector" / name
    store = TokenStore()
    if (folder / "store.json").exists():
        store.restore(folder)
        if store._ids == [d.id for d in docs]:
            return store
        store = TokenStore()
    for s in range(0, len(docs), 256):
        chunk = docs[s : s + 256]
        store.add([d.id for d in chunk], enc.encode_documents([d.full_text for d in chunk]),
                  [{} for _ in chunk])
    store.save(folder)
    return store


def run_set(name: str, enc: TokenEncoder, args: argparse.Namespace) -> dict:
    ds = load_beir(DATA / name)
    docs, queries, qrels = ds.corpus, ds.queries, ds.qrels
    t0 = time.perf_counter()
    tokens = token_vectors(name, enc, docs)
    t_index = time.perf_counter() - t0
    t0 = time.perf_counter()
    qv = enc.encode_queries([q.text for q in queries])
    q_enc_ms = 1000 * (time.perf_counter() - t0) / len(queries)
    qids = [q.id for q in queries]
    ids = tokens._ids
    lat_idx = list(range(min(args.latency_queries, len(queries))))
    out: dict = {"docs": len(docs), "queries": len(queries),
                 "tokens_per_doc": round(len(tokens.tokens) / len(docs), 1),
                 "doc_encode_s": round(t_index, 1), "query_encode_ms": round(q_enc_ms, 2)}
    methods: dict = {}
    per_query: dict = {}

    exact = tokens.search(qv, 100)
    per_query["exact"] = evaluate(qrels, dict(zip(qids, exact, strict=True)))
    methods["exact_maxsim"] = {
        **summary(per_query["exact"]),
        "p50_ms": p50_ms(lambda i: tokens.search([qv[i]], 100), lat_idx),
        "bytes_per_doc": round(tokens.nbytes / len(docs)),
    }
    for k_sim, d_proj, reps, d_final in FDE_SETTINGS:
        fde = MuveraFDE(k_sim=k_sim, d_proj=d_proj, r_reps=reps, d_final=d_final)
        store = ExactStore()
        vecs = [tokens.get([i])[0] for i in ids]
        store.add(ids, fde.encode_documents(vecs), [{} for _ in ids])
        qf = fde.encode_queries(qv)
        tag = f"k{k_sim}_p{d_proj}_r{reps}" + (f"_f{d_final}" if d_final else "")
        dim = fde.output_dim(tokens.dim)
        fde_only = store.search(qf, 100)
        cands = store.search(qf, CANDIDATES)

        def rerank(i: int, cands=cands) -> list[tuple[str, float]]:
            cid = [c for c, _ in cands[i]]
            return list(zip(cid, tokens.score(qv[i], cid).tolist(), strict=True))

        def one(i: int, store=store, fde=fde) -> None:
            c = store.search(fde.encode_queries([qv[i]]), CANDIDATES)[0]
            cid = [x for x, _ in c]
            tokens.score(qv[i], cid)

        methods[f"fde_only_{tag}"] = {
            **summary(evaluate(qrels, dict(zip(qids, fde_only, strict=True)))),
            "p50_ms": p50_ms(lambda i, store=store, fde=fde: store.search(
                fde.encode_queries([qv[i]]), 100), lat_idx),
            "fde_dim": dim, "bytes_per_doc": 4 * dim,
        }
        rr = [sorted(rerank(i), key=lambda x: -x[1])[:100] for i in range(len(queries))]
        per_query[tag] = evaluate(qrels, dict(zip(qids, rr, strict=True)))
        methods[f"fde_rerank{CANDIDATES}_{tag}"] = {
            **summary(per_query[tag]), "p50_ms": p50_ms(one, lat_idx),
            "bytes_per_doc": 4 * dim + round(tokens.nbytes / len(docs)),
        }
    methods.update(run_qdrant(tokens, qv, qids, qrels, exact, args))
    out["methods"] = methods
    ex = methods["exact_maxsim"]
    for m, v in methods.items():
        if m.startswith("fde_rerank"):
            v["ndcg10_vs_exact"] = round(v["ndcg10"] / ex["ndcg10"], 4) if ex["ndcg10"] else None
            v["speedup_vs_exact"] = round(ex["p50_ms"] / v["p50_ms"], 1) if v["p50_ms"] else None
    out["bm25_rerank"] = bm25_rerank(docs, queries, qrels, tokens, qv)
    return out


def run_qdrant(tokens, qv, qids, qrels, exact, args) -> dict:  # noqa: ANN001
    """Qdrant local mode scores MaxSim in Python per point, so only the first
    ``--qdrant-queries`` queries run; their top-10 is compared with exact MaxSim's."""
    n = min(args.qdrant_queries, len(qids))
    if n == 0 or len(tokens._ids) > args.qdrant_max_docs:
        return {}
    store = QdrantMultiVectorStore(collection="bench")
    ids = tokens._ids
    for s in range(0, len(ids), 256):
        chunk = ids[s : s + 256]
        store.add(chunk, tokens.get(chunk), [{} for _ in chunk])
    times, agree, res = [], [], {}
    for i in range(n):
        t = time.perf_counter()
        hits = store.search([qv[i]], 100)[0]
        times.append(time.perf_counter() - t)
        res[qids[i]] = hits
        agree.append(len({d for d, _ in hits[:10]} & {d for d, _ in exact[i][:10]}) / 10)
    sub = {q: qrels[q] for q in qids[:n]}
    store.close()
    return {"qdrant_multivector_local": {
        "queries_run": n,
        **{f"{k}_on_these": v for k, v in summary(evaluate(sub, res)).items()},
        "exact_ndcg10_on_these": summary(evaluate(sub, dict(zip(qids[:n], exact[:n], strict=True)))
                                         )["ndcg10"],
        "top10_overlap_with_exact": round(float(np.mean(agree)), 4),
        "p50_ms": round(1000 * float(np.median(times)), 2),
    }}


def bm25_rerank(docs, queries, qrels, tokens, qv) -> dict:  # noqa: ANN001
    from retrievers import BM25Retriever

    bm = BM25Retriever().index(docs)
    rankings = bm.retrieve_batch(queries, k=100)
    base = {r.query.id: list(zip(r.ids, r.scores, strict=True)) for r in rankings}
    rer = {}
    for i, r in enumerate(rankings):
        s = tokens.score(qv[i], r.ids) if r.ids else np.zeros(0)
        rer[r.query.id] = list(zip(r.ids, s.tolist(), strict=True))
    a, b = evaluate(qrels, base), evaluate(qrels, rer)
    qs = sorted(a)
    x = np.array([a[q]["ndcg10"] for q in qs])
    y = np.array([b[q]["ndcg10"] for q in qs])
    return {"bm25_ndcg10": round(float(x.mean()), 4), "rerank_ndcg10": round(float(y.mean()), 4),
            "delta": round(float((y - x).mean()), 4), "p_ttest": round(paired_t_test(y, x), 5),
            "p_randomization": round(randomization_test(y, x), 5),
            "bm25_recall100": summary(a)["recall100"]}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sets", nargs="*", default=list(SETS))
    ap.add_argument("--latency-queries", type=int, default=30)
    ap.add_argument("--qdrant-queries", type=int, default=10)
    ap.add_argument("--qdrant-max-docs", type=int, default=2000)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    enc = TokenEncoder("minilm")
    report = {"encoder": enc.to_config(), "candidates": CANDIDATES, "sets": {}}
    for name in args.sets:
        if not (DATA / name).exists():
            report["sets"][name] = "skipped: dataset not found"
            continue
        report["sets"][name] = run_set(name, enc, args)
        print(json.dumps({name: report["sets"][name]}), file=sys.stderr, flush=True)
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
