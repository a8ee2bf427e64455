"""Compressors on SciFact: achieved token ratio, rationale survival and nDCG@10, printed as JSON.

    python bench/bench_compressors.py                    # first 50 test queries with evidence
    python bench/bench_compressors.py --queries 20 --lm-queries 0   # skip token pruning

First stage: BM25 top-10 over the SciFact corpus (title + text). For each compressor and budget
(25% and 50% of the input tokens, where the node has a budget):

* ``ratio``: achieved tokens out / tokens in over all queries, in the node's own tokenizer
  (MiniLM WordPiece; SmolLM2 BPE for token pruning), summed from ``metadata["compression"]``;
* ``rationale_survival``: share of SciFact rationale sentences still present verbatim
  (``evals.compression.content_survival``; the denominator counts rationales BM25 missed too);
* ``ndcg@10``: nDCG@10 of the surviving documents (scored by their original scores; a query whose
  ranking became empty scores 0).

Token pruning rewrites sentences, so verbatim rationale survival is ~0 for it by construction.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from evals.compression import content_survival, scifact_rationale_units  # noqa: E402
from evals.datasets import load_beir  # noqa: E402
from evals.measures import score_run  # noqa: E402
from rag.compressors import (  # noqa: E402
    ExtractiveCompressor,
    LostInTheMiddleReorder,
    RedundancyFilter,
    RelevanceCutoff,
    TokenPruningCompressor,
)
from rag.core.types import Ranking  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "scifact"


class CachedEncoder:
    """MiniLM vectors memoised by text, shared by all MiniLM-based configs. The figures are the
    same as without the cache; only time is saved (so no timings are reported)."""

    def __init__(self) -> None:
        from rag.core.encoders import TransformerEncoder

        self.enc = TransformerEncoder().load()
        self.cache: dict[tuple[str, str], np.ndarray] = {}

    def load(self) -> CachedEncoder:
        return self

    def _get(self, texts: list[str], kind: str) -> np.ndarray:
        todo = [t for t in dict.fromkeys(texts) if (kind, t) not in self.cache]
        for t, v in zip(todo, self.enc.encode(todo, kind=kind) if todo else []):
            self.cache[(kind, t)] = v
        if not texts:
            return np.zeros((0, self.enc.dim), dtype=np.float32)
        return np.stack([self.cache[(kind, t)] for t in texts])

    def encode_queries(self, texts: list[str]) -> np.ndarray:
        return self._get(list(texts), "query")

    def encode_documents(self, texts: list[str]) -> np.ndarray:
        return self._get(list(texts), "document")


def ndcg10(rankings: list[Ranking], qrels: dict[str, dict[str, int]]) -> float:
    run = {r.query.id: {h.id: h.score for h in r.hits} for r in rankings if r.hits}
    judged = {r.query.id: qrels[r.query.id] for r in rankings}
    return round(score_run(run, judged, ["nDCG@10"], missing="zero").mean["nDCG@10"], 4)


def ratio(rankings: list[Ranking]) -> float:
    tin = tout = 0
    for r in rankings:
        if r.hits:
            m = r.hits[0].document.metadata["compression"]
            tin, tout = tin + m["ranking_tokens_in"], tout + m["ranking_tokens_out"]
    return round(tout / tin, 4) if tin else float("nan")


def measure(name, node, rankings, units, qrels) -> dict:
    out = node.compress_batch(rankings)
    print(f"done: {name}", file=sys.stderr, flush=True)
    return {
        "compressor": name,
        "queries": len(rankings),
        "ratio": ratio(out),
        "rationale_survival": round(content_survival(out, units).mean, 4),
        "ndcg@10": ndcg10(out, qrels),
        "docs_per_query": round(sum(len(r) for r in out) / len(out), 2),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--queries", type=int, default=50)
    ap.add_argument("--lm-queries", type=int, default=50, help="token pruning queries (0: skip)")
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    args = ap.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    from retrievers import BM25Retriever

    ds = load_beir(DATA)
    units = scifact_rationale_units(DATA)
    queries = [q for q in ds.queries if q.id in units][: args.queries]
    rankings = BM25Retriever().index(ds.corpus).retrieve_batch(queries, k=args.k)
    qrels = ds.qrels
    enc = CachedEncoder()
    rows = [
        {
            "compressor": "none (bm25 top-10)",
            "queries": len(rankings),
            "ratio": 1.0,
            "rationale_survival": round(content_survival(rankings, units).mean, 4),
            "ndcg@10": ndcg10(rankings, qrels),
        }
    ]
    for budget in (0.25, 0.5):
        nodes = {
            f"extractive global {budget}": ExtractiveCompressor(ratio=budget, encoder=enc),
            f"extractive per-doc {budget}": ExtractiveCompressor(
                ratio=budget, per_document=True, encoder=enc
            ),
        }
        for name, node in nodes.items():
            rows.append(measure(name, node, rankings, units, qrels))
        if args.lm_queries > 0:
            node = TokenPruningCompressor(ratio=budget)
            sub = rankings[: args.lm_queries]
            rows.append(measure(f"token pruning {budget}", node, sub, units, qrels))
            sub_base = {"ratio": 1.0, "rationale_survival": content_survival(sub, units).mean}
            rows[-1]["uncompressed_same_queries"] = {
                **{k: round(v, 4) for k, v in sub_base.items()},
                "ndcg@10": ndcg10(sub, qrels),
            }
    for name, node in [
        ("redundancy dedup 0.95", RedundancyFilter(mode="dedup", threshold=0.95, encoder=enc)),
        (
            "redundancy dedup+mmr 0.5",
            RedundancyFilter(mode="dedup+mmr", lambda_mult=0.5, encoder=enc),
        ),
        ("cutoff adaptive min_k=3", RelevanceCutoff(adaptive=True, min_k=3)),
        ("lost in the middle", LostInTheMiddleReorder()),
    ]:
        rows.append(measure(name, node, rankings, units, qrels))
    out = {"dataset": "scifact/test", "first_stage": f"bm25 top-{args.k}", "results": rows}
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
