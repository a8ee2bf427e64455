"""Scale figures: quantized / truncated indexes and HNSW recall on the shared collections.

For each collection, from the cached MiniLM float32 document vectors (bench_reference.py builds
them; only queries are encoded here) it prints, per index configuration, nDCG@10 (from a k=10
search), Recall@100 (k=100 search), index bytes per document and the search p50 (one query at a
time, k=10, query encoding excluded), with ratios to float32 side by side:

* ExactStore: float32, float16, int8, 2bit, binary, each with and without float rescoring
  (oversampling 4), and Matryoshka truncation ``dims`` 64/128/256 with and without rescoring.
* QdrantEdgeStore (Qdrant's engine in-process): the same quantizations, Qdrant's own codes.
* ANN: Qdrant HNSW recall@10 against exact search, strong (m=16, ef_construct=100, ef=64) and weak
  (m=4, ef_construct=16, ef=10) graphs, documents inserted in random order, clustered order
  (k-means clusters one after another) and by local intrinsic dimensionality, descending and
  ascending (Elliott & Clark, "The Impacts of Data, Ordering, and Intrinsic Dimensionality on Recall
  in Hierarchical Navigable Small Worlds", ICTIR 2024); 3 seeds for random and clustered.

    OMP_NUM_THREADS=1 python bench/bench_scale.py [--datasets scifact,cranfield,cisi,med,adi]
    OMP_NUM_THREADS=1 python bench/bench_scale.py --datasets '' --matryoshka-2d adi,med

All five collections are small (82 to 5,183 documents): latency and HNSW figures at this size are
lower bounds of what large collections show; bytes per document do not depend on size.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from locations import DATA

os.environ.setdefault("OMP_NUM_THREADS", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SHARED = DATA

import numpy as np  # noqa: E402

EXACT_CONFIGS: list[tuple[str, dict[str, Any]]] = [
    ("float32", {}),
    ("float16", {"dtype": "float16"}),
    ("int8", {"quantization": "int8", "rescore": False}),
    ("int8+rescore", {"quantization": "int8"}),
    ("2bit", {"quantization": "2bit", "rescore": False}),
    ("2bit+rescore", {"quantization": "2bit"}),
    ("binary", {"quantization": "binary", "rescore": False}),
    ("binary+rescore", {"quantization": "binary"}),
    ("binary+rescore(x10)", {"quantization": "binary", "oversampling": 10.0}),
]
MRL_DIMS = (64, 128, 256)
EDGE_CONFIGS: list[tuple[str, dict[str, Any]]] = [
    ("qdrant-float32", {}),
    ("qdrant-int8", {"quantization": "int8", "rescore": False}),
    ("qdrant-int8+rescore", {"quantization": "int8"}),
    ("qdrant-2bit", {"quantization": "2bit", "rescore": False}),
    ("qdrant-2bit+rescore", {"quantization": "2bit"}),
    ("qdrant-binary", {"quantization": "binary", "rescore": False}),
    ("qdrant-binary+rescore", {"quantization": "binary"}),
]
ORDERS = ("random", "clustered", "lid_desc", "lid_asc")
HNSW = {"strong": {"hnsw_m": 16, "hnsw_ef_construct": 100, "hnsw_ef": 64},
        "weak": {"hnsw_m": 4, "hnsw_ef_construct": 16, "hnsw_ef": 10}}


def cached(name: str) -> tuple[list[str], np.ndarray, Any]:
    from rag.core.models import cache_dir
    from rag.index.persist import load_retriever

    path = cache_dir() / "bench" / f"{name}-minilm-auto"
    if not (path / "config.json").exists():
        raise SystemExit(f"{path} is missing: run bench/bench_reference.py --datasets {name}")
    r = load_retriever(path)
    return list(r.store._ids), np.asarray(r.store._vecs, dtype=np.float32), r


def query_vectors(name: str, retriever: Any, queries: list) -> np.ndarray:
    from rag.core.models import cache_dir

    f = cache_dir() / "bench" / "scale" / f"{name}-queries.npy"
    if f.exists():
        q = np.load(f)
        if len(q) == len(queries):
            return q
    q = retriever.encoder.encode([retriever.query_text(x) for x in queries], kind="query")
    f.parent.mkdir(parents=True, exist_ok=True)
    np.save(f, q)
    return q


def measure(store: Any, qids: list[str], q: np.ndarray, qrels: dict) -> dict[str, Any]:
    from evals.measures.compute import score_run

    r10 = store.search(q, 10)
    r100 = store.search(q, 100)
    s10 = score_run({i: dict(h) for i, h in zip(qids, r10)}, qrels, ["nDCG@10"])
    s100 = score_run({i: dict(h) for i, h in zip(qids, r100)}, qrels, ["R@100"])
    times = []
    for row in q[:100]:
        t = time.perf_counter()
        store.search(row[None, :], 10)
        times.append(time.perf_counter() - t)
    return {
        "nDCG@10": round(s10.mean["nDCG@10"], 4),
        "R@100": round(s100.mean["R@100"], 4),
        "p50_ms": round(float(np.median(times)) * 1000, 3),
        "_run10": r10,
    }


def exact_rows(ids, vecs, qids, q, qrels) -> dict[str, dict]:
    from retrievers.stores import ExactStore

    out: dict[str, dict] = {}
    configs = list(EXACT_CONFIGS)
    for m in MRL_DIMS:
        configs += [(f"mrl{m}", {"dims": m, "rescore": False}), (f"mrl{m}+rescore", {"dims": m})]
    configs += [("mrl128+binary+rescore", {"dims": 128, "quantization": "binary"})]
    payloads = [{} for _ in ids]
    for label, kw in configs:
        s = ExactStore(**kw)
        s.add(ids, vecs, payloads)
        row = measure(s, qids, q, qrels)
        row["bytes_per_doc"] = s.bytes_per_vector()["index"]
        out[label] = row
    return out


def edge_rows(ids, vecs, qids, q, qrels) -> dict[str, dict]:
    from retrievers.kernels.quantize import bytes_per_vector
    from retrievers.stores import QdrantEdgeStore

    out = {}
    payloads = [{} for _ in ids]
    for label, kw in EDGE_CONFIGS:
        s = QdrantEdgeStore(**kw)
        s.add(ids, vecs, payloads)
        s.optimize()
        row = measure(s, qids, q, qrels)
        row["bytes_per_doc"] = bytes_per_vector(kw.get("quantization"), vecs.shape[1])
        s._shard.flush()
        disk = sum(p.stat().st_size for p in Path(s._dir).rglob("*") if p.is_file())
        row["shard_disk_bytes_per_doc"] = round(disk / len(ids))
        out[label] = row
        s.close()
    return out


def cluster_order(vecs: np.ndarray, n_clusters: int, seed: int) -> np.ndarray:
    """Rows grouped by k-means cluster (spherical, 10 Lloyd steps), clusters in a seeded order."""
    rng = np.random.default_rng(seed)
    c = vecs[rng.choice(len(vecs), n_clusters, replace=False)]
    for _ in range(10):
        lab = np.argmax(vecs @ c.T, axis=1)
        for j in range(n_clusters):
            m = lab == j
            if m.any():
                v = vecs[m].mean(0)
                c[j] = v / max(np.linalg.norm(v), 1e-12)
    lab = np.argmax(vecs @ c.T, axis=1)
    rank = rng.permutation(n_clusters)
    return np.lexsort((np.arange(len(vecs)), rank[lab]))


def lid_mle(vecs: np.ndarray, k: int = 20) -> np.ndarray:
    """Local intrinsic dimensionality per point, the MLE of Levina & Bickel over the ``k``
    nearest neighbours' Euclidean distances (as in the HNSW ordering study)."""
    sq = np.maximum(2.0 - 2.0 * (vecs @ vecs.T), 0.0)  # unit vectors: |a-b|^2 = 2 - 2 a.b
    np.fill_diagonal(sq, np.inf)
    d = np.sqrt(np.sort(np.partition(sq, k, axis=1)[:, :k], axis=1))
    d = np.maximum(d, 1e-12)
    return -1.0 / np.mean(np.log(d / d[:, -1:]), axis=1).clip(max=-1e-12)


def ann_rows(ids, vecs, qids, q, exact_run10) -> dict[str, Any]:
    from evals.ann import ann_recall
    from retrievers.stores import QdrantEdgeStore

    exact = {i: dict(h) for i, h in zip(qids, exact_run10)}
    n_clusters = max(2, int(np.sqrt(len(ids))))
    lid = lid_mle(vecs, k=min(20, len(ids) - 1))
    out: dict[str, Any] = {"n_clusters": n_clusters, "lid_mean": round(float(lid.mean()), 2)}
    for gname, kw in HNSW.items():
        res: dict[str, list[float]] = {o: [] for o in ORDERS}  # + "p50" (mean, s)
        for seed in (0, 1, 2):
            orders = {
                "random": np.random.default_rng(seed).permutation(len(ids)),
                "clustered": cluster_order(vecs, n_clusters, seed),
            }
            if seed == 0:  # LID orders are deterministic: one run each
                orders["lid_desc"] = np.argsort(-lid, kind="stable")
                orders["lid_asc"] = np.argsort(lid, kind="stable")
            for oname, order in orders.items():
                s = QdrantEdgeStore(**kw)
                for b in range(0, len(order), 256):  # insertion in order, batch by batch
                    rows = order[b : b + 256]
                    s.add([ids[r] for r in rows], vecs[rows], [{} for _ in rows])
                s.optimize()
                run = {i: dict(h) for i, h in zip(qids, s.search(q, 10))}
                if seed == 0 and oname == "random":
                    t = time.perf_counter()
                    for row in q[:100]:
                        s.search(row[None, :], 10)
                    res.setdefault("p50", []).append((time.perf_counter() - t) / min(100, len(q)))
                res[oname].append(ann_recall(run, exact, k=10).mean)
                s.close()
        mean_ms = round(res.pop("p50")[0] * 1000, 3)
        out[gname] = {
            **kw,
            "mean_query_ms": mean_ms,
            **{f"recall@10_{o}": round(float(np.mean(v)), 4) for o, v in res.items()},
            **{f"recall@10_{o}_per_seed": [round(x, 4) for x in v] for o, v in res.items()},
        }
    return out


def matryoshka_2d(name: str, layers: tuple[int, ...] = (2, 4, 6)) -> dict[str, Any]:
    """nDCG@10 per (layer, dims) cell: MiniLM embeddings pooled after ``layer`` of its 6
    transformer layers (the 2D Matryoshka layer axis), searched on the first ``dims`` dims
    (re-encodes the corpus once per layer, so only for the small collections)."""
    from evals import load_beir
    from evals.measures.compute import score_run
    from rag.core.encoders import TransformerEncoder
    from retrievers import DenseRetriever
    from retrievers.stores import ExactStore

    ds = load_beir(SHARED / name)
    out: dict[str, Any] = {}
    for layer in layers:
        enc = TransformerEncoder(precision="auto", layer=layer)
        t = time.perf_counter()
        dvecs = enc.encode([d.full_text for d in ds.corpus], kind="document")
        took = time.perf_counter() - t
        q = enc.encode([DenseRetriever(encoder=enc).query_text(x) for x in ds.queries], "query")
        row: dict[str, Any] = {"corpus_encode_s": round(took, 1)}
        for dims in (384, 128, 64):
            s = ExactStore(dims=dims if dims < 384 else None, rescore=False)
            s.add([d.id for d in ds.corpus], dvecs, [{} for _ in ds.corpus])
            run = {x.id: dict(h) for x, h in zip(ds.queries, s.search(q, 10))}
            ndcg = score_run(run, ds.qrels, ["nDCG@10"]).mean["nDCG@10"]
            row[f"nDCG@10_dims{dims}"] = round(ndcg, 4)
        out[f"layer{layer}"] = row
    return out


def run_one(name: str, ann: bool) -> dict[str, Any]:
    from evals import load_beir

    ds = load_beir(SHARED / name)
    ids, vecs, retriever = cached(name)
    q = query_vectors(name, retriever, ds.queries)
    qids = [x.id for x in ds.queries]
    rows = exact_rows(ids, vecs, qids, q, ds.qrels)
    rows.update(edge_rows(ids, vecs, qids, q, ds.qrels))
    base = rows["float32"]
    for label, row in rows.items():
        ref = rows["qdrant-float32"] if label.startswith("qdrant") else base
        row["ndcg_ratio"] = round(row["nDCG@10"] / ref["nDCG@10"], 4) if ref["nDCG@10"] else None
        row["size_ratio"] = round(base["bytes_per_doc"] / row["bytes_per_doc"], 1)
    out: dict[str, Any] = {"n_docs": len(ids), "n_queries": len(qids), "dim": vecs.shape[1]}
    if ann:
        out["ann"] = ann_rows(ids, vecs, qids, q, base["_run10"])
    for row in rows.values():
        row.pop("_run10")
    out["indexes"] = rows
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--datasets", default="scifact,cranfield,cisi,med,adi")
    ap.add_argument("--no-ann", action="store_true")
    ap.add_argument("--matryoshka-2d", default="", help="collections for the layer x dims grid")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
    report: dict[str, Any] = {"datasets": {}}
    if args.matryoshka_2d:
        report["matryoshka_2d"] = {n: matryoshka_2d(n) for n in args.matryoshka_2d.split(",")}
    for name in filter(None, args.datasets.split(",")):
        t = time.perf_counter()
        report["datasets"][name] = run_one(name, not args.no_ann)
        print(f"done {name} in {time.perf_counter() - t:.0f}s", file=sys.stderr, flush=True)
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
