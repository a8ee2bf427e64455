"""Qdrant-side hybrid retrieval against the in-process hybrid, on the shared judged collections.

Prints one JSON object. Per collection:

* ``bm25``: Qdrant sparse vectors (``Modifier.IDF``) against bm25s (``BM25Retriever``): share of
  queries with the same top-10, nDCG@10 of each, largest score difference;
* ``hybrid``: ``QdrantHybridRetriever`` (one ``query_points``: dense + BM25 prefetch, RRF k=60)
  against ``HybridRetriever([BM25Retriever(), DenseRetriever()])``: nDCG@10, R@100, same top-10,
  p50/p95 latency per query (query vectors precomputed, so both time retrieval and fusion only),
  and the in-process hybrid with BM25's zero-score hits dropped (what Qdrant's sparse search
  returns), which isolates the one systematic difference;
* ``maxsim`` (``--maxsim-sets``): the same + MaxSim re-scoring of the fused top-100 with MiniLM
  token vectors (in-process: ``LateInteractionReranker``; Qdrant: multivector ``MAX_SIM`` over a
  prefetch).

``--rss-docs N`` adds the serving-process RSS of a synthetic N-document collection opened from
disk: today's ``HybridRetriever`` (``BM25Retriever`` + ``DenseRetriever(QdrantStore(path=...))``,
documents in the process) against ``QdrantHybridRetriever(path=...)`` (documents in the payload).

Dense document vectors come from the bench cache (``bench/locations.py``): ``minilm/<set>.npy``
(fp32 MiniLM, ``TransformerEncoder()``), token vectors from ``minilm_tokens`` (fp16); a set
whose cache is missing is encoded here.

    python bench/bench_qdrant.py [--sets adi med] [--maxsim-sets adi med] [--bm25-only scifact]
                                 [--rss-docs 200000]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from locations import DATA, cache

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from evals.datasets import load_beir  # noqa: E402
from rag.core.encoders import TransformerEncoder  # noqa: E402
from rerankers import LateInteractionReranker  # noqa: E402
from retrievers import (  # noqa: E402
    BM25Retriever,
    DenseRetriever,
    HybridRetriever,
    QdrantHybridRetriever,
    rrf,
)
from retrievers.multivector import TokenEncoder  # noqa: E402
from retrievers.qdrant_schema import sparse_vector  # noqa: E402

CACHE = cache("minilm").parent
SETS = ("adi", "med", "cisi", "cranfield", "scifact")


class FixedEncoder:
    """Dense vectors looked up by text (precomputed with ``TransformerEncoder()``)."""

    def __init__(self, table: dict[str, np.ndarray]) -> None:
        self.table = table

    def load(self) -> FixedEncoder:
        return self

    def encode(self, texts: list[str], kind: str = "document") -> np.ndarray:
        return np.stack([self.table[t] for t in texts]).astype(np.float32)


class FixedTokens(TokenEncoder):
    """Token matrices looked up by text (precomputed with ``TokenEncoder()``)."""

    def __init__(self, docs: dict[str, np.ndarray], queries: dict[str, np.ndarray]) -> None:
        super().__init__()
        self.docs, self.queries = docs, queries

    def load(self) -> FixedTokens:
        return self

    def encode_documents(self, texts):  # type: ignore[no-untyped-def]
        return [self.docs[t] for t in texts]

    def encode_queries(self, texts):  # type: ignore[no-untyped-def]
        return [self.queries[t] for t in texts]


def evaluate(qrels: dict, run: dict[str, list[tuple[str, float]]]) -> dict[str, dict[str, float]]:
    import pytrec_eval

    r = {q: {d: float(s) for d, s in hits} for q, hits in run.items()}
    for q in qrels:
        r.setdefault(q, {})
    ev = pytrec_eval.RelevanceEvaluator(qrels, {"ndcg_cut.10", "recall.100"}).evaluate(r)
    return {q: {"ndcg10": v["ndcg_cut_10"], "recall100": v["recall_100"]} for q, v in ev.items()}


def mean(per_q: dict[str, dict[str, float]], m: str) -> float:
    return round(float(np.mean([v[m] for v in per_q.values()])), 4)


def as_run(rankings) -> dict[str, list[tuple[str, float]]]:  # noqa: ANN001
    # pytrec_eval breaks score ties by descending doc id; ranks, not scores, are what we compare
    return {
        r.query.id: [(h.id, float(len(r.hits) - i)) for i, h in enumerate(r.hits)] for r in rankings
    }


def same_top(a, b, k: int = 10) -> float:  # noqa: ANN001
    return round(float(np.mean([x.ids[:k] == y.ids[:k] for x, y in zip(a, b, strict=True)])), 4)


def timed(fn, queries, n: int) -> dict[str, float]:  # noqa: ANN001
    times = []
    for q in queries[:n]:
        t = time.perf_counter()
        fn(q)
        times.append(1000 * (time.perf_counter() - t))
    return {
        "p50_ms": round(float(np.percentile(times, 50)), 2),
        "p95_ms": round(float(np.percentile(times, 95)), 2),
    }


def dense_vectors(name: str, docs, enc: TransformerEncoder) -> np.ndarray:  # noqa: ANN001
    npy, ids = CACHE / "minilm" / f"{name}.npy", CACHE / "minilm" / f"{name}.ids.json"
    if npy.exists() and ids.exists() and json.loads(ids.read_text()) == [d.id for d in docs]:
        return np.load(npy)
    return enc.encode([d.full_text for d in docs], kind="document")


def token_vectors(name: str, docs) -> list[np.ndarray] | None:  # noqa: ANN001
    d = CACHE / "minilm_tokens"
    ids = d / f"{name}.ids.json"
    if not ids.exists() or json.loads(ids.read_text()) != [x.id for x in docs]:
        return None
    toks = np.load(d / f"{name}.tokens.npy", mmap_mode="r")
    off = np.load(d / f"{name}.offsets.npy")
    return [np.asarray(toks[off[i] : off[i + 1]], dtype=np.float32) for i in range(len(docs))]


def bm25_parity(ds, bm25: BM25Retriever, q: QdrantHybridRetriever) -> dict:  # noqa: ANN001
    from rag.core.types import Ranking

    ref = bm25.retrieve_batch(ds.queries, k=10)
    got = []
    diff = 0.0
    for query, r in zip(ds.queries, ref, strict=True):
        idx, val = q.sparse.query_vector(query.text)
        pts = []
        if len(idx):
            pts = q.client.query_points(
                q.collection,
                query=sparse_vector(idx, val),
                using="bm25",
                limit=20,
                with_payload=["doc_id"],
            ).points
        scored = [(bm25.documents[p.payload["doc_id"]], p.score) for p in pts]
        got.append(Ranking.from_scored(query, scored, 10, "qdrant_bm25"))
        ref_s = dict(zip(r.ids, r.scores, strict=True))
        diff = max(
            [diff, *(abs(ref_s[i] - s) for i, s in zip(got[-1].ids, got[-1].scores) if i in ref_s)]
        )
    # bm25s returns zero-score documents when fewer than 10 match; Qdrant returns only matches
    ref_pos = [r.model_copy(update={"hits": tuple(h for h in r.hits if h.score > 0)}) for r in ref]
    return {
        "same_top10": same_top(ref_pos, got),
        "ndcg10_bm25s": mean(evaluate(ds.qrels, as_run(ref)), "ndcg10"),
        "ndcg10_qdrant": mean(evaluate(ds.qrels, as_run(got)), "ndcg10"),
        "max_abs_score_diff": float(f"{diff:.3g}"),
    }


def run_set(name: str, enc: TransformerEncoder, args: argparse.Namespace) -> dict:
    ds = load_beir(DATA / name)
    docs, queries = ds.corpus, ds.queries
    if name in args.bm25_only:  # BM25 parity alone: placeholder dense vectors, no encoding
        qh = QdrantHybridRetriever(collection=name).index_vectors(docs, np.ones((len(docs), 4)))
        out = {
            "docs": len(docs),
            "queries": len(queries),
            "bm25": bm25_parity(ds, BM25Retriever().index(docs), qh),
        }
        qh.close()
        return out
    dvec = dense_vectors(name, docs, enc)
    qvec = enc.encode([q.text for q in queries], kind="query")
    table = {d.full_text: v for d, v in zip(docs, dvec, strict=True)}
    table.update({q.text: v for q, v in zip(queries, qvec, strict=True)})
    fixed = FixedEncoder(table)
    out: dict = {"docs": len(docs), "queries": len(queries)}

    t = time.perf_counter()
    hyb = HybridRetriever([BM25Retriever(), DenseRetriever(encoder=fixed)]).index(docs)
    out["index_s_in_process"] = round(time.perf_counter() - t, 1)
    t = time.perf_counter()
    qh = QdrantHybridRetriever(collection=name, encoder=fixed).index_vectors(docs, dvec)
    out["index_s_qdrant"] = round(time.perf_counter() - t, 1)
    out["bm25"] = bm25_parity(ds, hyb.retrievers[0], qh)

    a = hyb.retrieve_batch(queries, k=100)
    b = qh.retrieve_batch(queries, k=100)
    bm = hyb.retrievers[0].retrieve_batch(queries, k=100)
    de = hyb.retrievers[1].retrieve_batch(queries, k=100)
    nz = [
        rrf([x.model_copy(update={"hits": tuple(h for h in x.hits if h.score > 0)}), y], 100)
        for x, y in zip(bm, de, strict=True)
    ]
    ea, eb, en = (evaluate(ds.qrels, as_run(r)) for r in (a, b, nz))
    out["hybrid"] = {
        "in_process": {
            "ndcg10": mean(ea, "ndcg10"),
            "recall100": mean(ea, "recall100"),
            **timed(lambda q: hyb.retrieve(q, k=10), queries, args.latency_queries),
        },
        "qdrant": {
            "ndcg10": mean(eb, "ndcg10"),
            "recall100": mean(eb, "recall100"),
            **timed(lambda q: qh.retrieve(q, k=10), queries, args.latency_queries),
        },
        "in_process_zero_bm25_dropped": {"ndcg10": mean(en, "ndcg10")},
        "same_top10": same_top(a, b),
        "same_top10_vs_zero_dropped": same_top(nz, b),
    }
    out["hybrid"]["ndcg10_diff"] = round(
        out["hybrid"]["qdrant"]["ndcg10"] - out["hybrid"]["in_process"]["ndcg10"], 4
    )
    qh.close()
    if name in args.maxsim_sets:
        out["maxsim"] = maxsim(name, ds, fixed, dvec, hyb, a, args)
    return out


def maxsim(name, ds, fixed, dvec, hyb, fused, args) -> dict:  # noqa: ANN001
    toks = token_vectors(name, ds.corpus)
    if toks is None:
        return {"skipped": "no cached token vectors"}
    real = TokenEncoder().load()
    qtok = real.encode_queries([q.text for q in ds.queries])
    tok = FixedTokens(
        {d.full_text: m for d, m in zip(ds.corpus, toks, strict=True)},
        {q.text: m for q, m in zip(ds.queries, qtok, strict=True)},
    )
    late = LateInteractionReranker(encoder=tok, cache_size=len(ds.corpus))
    late.cache_vectors(ds.corpus, toks)
    a = late.rerank_batch(fused, k=100)
    qh = QdrantHybridRetriever(
        collection=name + "_mv", encoder=fixed, token_encoder=tok, upsert_batch=32
    ).index_vectors(ds.corpus, dvec, toks)
    b = qh.retrieve_batch(ds.queries, k=100)
    ea, eb = evaluate(ds.qrels, as_run(a)), evaluate(ds.qrels, as_run(b))
    n = args.latency_queries
    res = {
        "in_process": {
            "ndcg10": mean(ea, "ndcg10"),
            **timed(lambda q: late.rerank(hyb.retrieve(q, k=100), k=10), ds.queries, n),
        },
        "qdrant": {
            "ndcg10": mean(eb, "ndcg10"),
            **timed(lambda q: qh.retrieve(q, k=10), ds.queries, n),
        },
        "same_top10": same_top(a, b),
    }
    res["ndcg10_diff"] = round(res["qdrant"]["ndcg10"] - res["in_process"]["ndcg10"], 4)
    qh.close()
    return res


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sets", nargs="*", default=list(SETS))
    ap.add_argument("--maxsim-sets", nargs="*", default=["adi", "med"])
    ap.add_argument("--bm25-only", nargs="*", default=[], help="sets run for BM25 parity only")
    ap.add_argument("--latency-queries", type=int, default=50)
    ap.add_argument("--rss-docs", type=int, default=0)
    ap.add_argument("--out", default=None, help="also write the JSON here")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(1)
    enc = TransformerEncoder().load()
    result: dict = {"sets": {}}
    for name in args.sets:
        result["sets"][name] = run_set(name, enc, args)
        print(json.dumps({name: result["sets"][name]}), file=sys.stderr, flush=True)
    if args.rss_docs:
        from bench_qdrant_rss import rss_compare  # type: ignore[import-not-found]

        result["rss"] = rss_compare(args.rss_docs)
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
