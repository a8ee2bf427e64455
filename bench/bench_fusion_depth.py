"""Fusion depth and per-query fusion weights for RRF(BM25, MiniLM); JSON on stdout.

    python bench/bench_fusion_depth.py --datasets adi,med     # 1 thread, vectors cached

On each collection's test queries, from one BM25 and one MiniLM (fp32, ``title + " " + text``)
ranking of depth 1000 per query:

* **depth**: R@100 and nDCG@10 of RRF (k = 60) fusing the top ``d`` of each list, for ``d`` in
  100, 200, 300, 500, 1000, with the paired randomisation test of each against ``d = 1000``
  (what the default hybrid depth costs in recall);
* **per-query weights** (an untried candidate of issue #30): weighted RRF whose weights come from
  each list's score distribution for that query, no training: ``w_i = max(z_i, 0) + eps`` with
  ``z_i = (s_1 - mean(s_1..s_100)) / std(s_1..s_100)`` the top score's z-score in its own top
  100 (a query-performance predictor in the spirit of NQC, Shtok et al., TOIS 2012: a list whose
  top stands out is trusted more), normalised to sum to the number of lists; compared with plain
  RRF at depth 1000 by the same test (Holm over this collection's comparisons).

* **latency** (``--latency``): the real ``HybridRetriever([BM25, dense])`` node, indexed once
  (document vectors served from the cache below, so nothing is re-encoded), answering each test
  query alone (``retrieve(q, k=10)``, the query encoded each time, as a server would) at depth
  100, 500 and 1000 in turn, the depths interleaved per query so load drift hits all alike;
  p50/mean ms per depth, and the R@100 of the node's own depth-``d`` ranking at ``k=100`` (the
  node's arithmetic, to confirm the list-level figures above).

Dense document vectors are cached like ``bench_quality.py``'s (``cache("minilm")/<set>.npy`` +
``<set>.ids.json``), so the two benchmarks share them; the machine note in the JSON says whether
it was shared.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from locations import DATA, cache

for _v in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

DEPTHS = (100, 200, 300, 500, 1000)
MEASURES = ["nDCG@10", "R@100"]


def dense_vectors(name: str, corpus: list) -> tuple[list[str], np.ndarray]:
    """fp32 MiniLM vectors of ``title + " " + text`` (cached as bench_quality reads them)."""
    from rag.encoders import TransformerEncoder

    folder = cache("minilm")
    ids_path, vec_path = folder / f"{name}.ids.json", folder / f"{name}.npy"
    if ids_path.exists() and vec_path.exists():
        return json.loads(ids_path.read_text()), np.load(vec_path)
    enc = TransformerEncoder(precision="fp32").load()
    vecs = enc.encode([d.full_text for d in corpus], kind="document")
    folder.mkdir(parents=True, exist_ok=True)
    tmp = vec_path.with_suffix(f".tmp{os.getpid()}.npy")
    np.save(tmp, vecs)
    os.replace(tmp, vec_path)
    ids_path.write_text(json.dumps([d.id for d in corpus]))
    return [d.id for d in corpus], vecs


def rankings(name: str) -> tuple[dict, dict, dict]:
    """``(bm25, dense, qrels)``: ``qid -> [(doc, score)]`` of depth 1000 for the test queries."""
    from evals import load_beir
    from rag.encoders import TransformerEncoder
    from retrievers import BM25Retriever

    ds = load_beir(DATA / name)
    bm25 = BM25Retriever().index(ds.corpus)
    lex = {r.query.id: list(zip(r.ids, r.scores)) for r in bm25.retrieve_batch(ds.queries, 1000)}
    ids, vecs = dense_vectors(name, ds.corpus)
    qv = TransformerEncoder(precision="fp32").load().encode([q.text for q in ds.queries], "query")
    sims = np.asarray(qv, dtype=np.float32) @ np.asarray(vecs, dtype=np.float32).T
    dense = {}
    for q, row in zip(ds.queries, sims):
        order = np.lexsort((np.array(ids), -row))[:1000]  # ties by id, like the retrievers
        dense[q.id] = [(ids[j], float(row[j])) for j in order]
    return lex, dense, ds.qrels


def weighted_rrf(lists: list[list[tuple[str, float]]], weights: list[float], depth: int) -> dict:
    out: dict[str, float] = {}
    for lst, w in zip(lists, weights):
        for rank, (doc, _) in enumerate(lst[:depth], 1):
            out[doc] = out.get(doc, 0.0) + w / (60 + rank)
    return out


def z_weights(lists: list[list[tuple[str, float]]], eps: float = 1e-3) -> list[float]:
    zs = []
    for lst in lists:
        s = np.array([x for _, x in lst[:100]], dtype=np.float64)
        z = 0.0 if len(s) < 2 or s.std() == 0 else (s[0] - s.mean()) / s.std()
        zs.append(max(z, 0.0) + eps)
    total = sum(zs)
    return [len(zs) * z / total for z in zs]


def latency(name: str, depths: tuple[int, ...] = (100, 500, 1000)) -> dict:
    """Per-query latency and R@100 of the real hybrid node at each depth (module docstring)."""
    import random

    from evals import load_beir, score_run
    from rag import embed_cache
    from rag.encoders import TransformerEncoder
    from retrievers import BM25Retriever, DenseRetriever, HybridRetriever

    ds = load_beir(DATA / name)
    ids, vecs = dense_vectors(name, ds.corpus)
    enc = TransformerEncoder(precision="fp32")
    text = {d.id: d.full_text for d in ds.corpus}
    hybrid = HybridRetriever([BM25Retriever(), DenseRetriever(encoder=enc)])
    with embed_cache.precomputed(enc, [text[i] for i in ids], vecs) as served:
        hybrid.index(ds.corpus)
    queries = [q for q in ds.queries if q.id in ds.qrels]
    hybrid.retrieve(queries[0], k=10)  # warm-up: model load, first search
    ms: dict[int, list[float]] = {d: [] for d in depths}
    rng = random.Random(0)
    for q in queries:
        for d in rng.sample(list(depths), len(depths)):
            hybrid.depth = d
            t = time.perf_counter()
            hybrid.retrieve(q, k=10)
            ms[d].append(1000 * (time.perf_counter() - t))
    out: dict = {"queries": len(queries), "encoded_at_index": served.stats["misses"]}
    for d in depths:
        hybrid.depth = d
        run = {r.query.id: dict(zip(r.ids, r.scores)) for r in hybrid.retrieve_batch(queries, 100)}
        recall = score_run(run, ds.qrels, ["R@100"], missing="zero").mean["R@100"]
        out[f"d{d}"] = {
            "p50_ms": round(float(np.median(ms[d])), 2),
            "mean_ms": round(float(np.mean(ms[d])), 2),
            "R@100": round(recall, 4),
        }
    return out


def collection(name: str) -> dict:
    from evals import compare_systems, score_run

    t0 = time.perf_counter()
    lex, dense, qrels = rankings(name)
    qids = [q for q in lex if q in qrels]
    runs = {
        f"rrf_d{d}": {q: weighted_rrf([lex[q], dense[q]], [1.0, 1.0], d) for q in qids}
        for d in DEPTHS
    }
    runs["rrf_zweights_d1000"] = {
        q: weighted_rrf([lex[q], dense[q]], z_weights([lex[q], dense[q]]), 1000) for q in qids
    }
    scores = {k: score_run(r, qrels, MEASURES, missing="zero") for k, r in runs.items()}
    per_query = {k: s.per_query for k, s in scores.items()}
    base = "rrf_d1000"
    comps = compare_systems({base: per_query[base], **per_query}, base, correction="holm")
    tests = {
        f"{c.system} {c.measure}": {"delta": round(c.delta, 4), "p_adj": round(c.p_adjusted, 4)}
        for c in comps
        if c.system != base
    }
    return {
        "queries": len(qids),
        "mean": {k: {m: round(v, 4) for m, v in s.mean.items()} for k, s in scores.items()},
        "vs_rrf_d1000": tests,
        "seconds": round(time.perf_counter() - t0, 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--datasets", default="adi,med,cisi,cranfield,scifact")
    ap.add_argument(
        "--latency", default="", metavar="SETS", help="also time the hybrid node per depth on SETS"
    )
    args = ap.parse_args()
    import torch

    torch.set_num_threads(1)
    out = {
        "machine": "shared 2-core AMD EPYC (AVX2), 1 thread, other jobs running",
        "collections": {n: collection(n) for n in args.datasets.split(",") if n},
        "latency": {n: latency(n) for n in args.latency.split(",") if n},
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
