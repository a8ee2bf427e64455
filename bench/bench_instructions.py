"""Instruction following on the SciFact stance probe (evals.stance): nDCG@10 under the original
instruction and p-MRR (FollowIR) when the instruction is altered to one stance.

    python bench/bench_instructions.py                  # prints JSON
    python bench/bench_instructions.py --think-queries 30 --systems bm25,think
    python bench/bench_instructions.py --followir path/to/core17   # a FollowIR-format folder

Systems: BM25, MiniLM dense (instruction ignored), MiniLM dense with the instruction naively
prepended (``"{instruction} {query}"``, MiniLM was not trained for it), ThinkRetriever
(SmolLM2-135M thought, BM25 inner, RRF fusion) and the SmolLM2 pointwise reranker with the
instruction in its prompt (over BM25's top ``--rerank-depth``, the rest of the top 100 in BM25
order) on the first ``--think-queries`` pairs only (CPU generation is slow); BM25 and MiniLM are
also scored on that same subset for comparison. All runs are 100 deep; a changed document outside
the top 100 has rank 101. The MiniLM index is the one bench_reference.py caches.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "2")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))  # sibling benches

from evals.pmrr import InstructionPairs, evaluate_pairs, load_followir  # noqa: E402
from evals.stance import scifact_stance_probe  # noqa: E402
from rag.generators import TransformersGenerator  # noqa: E402
from rerankers import LLMPointwiseReranker  # noqa: E402
from retrievers import BM25Retriever  # noqa: E402
from retrievers.think import ThinkRetriever  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / "shared" / "datasets"


def score(system: object, probe: InstructionPairs, n: int | None = None) -> dict[str, object]:
    og, alt = probe.original_queries[:n], probe.altered_queries[:n]
    ids = {q.id for q in og}
    sub = replace(probe, original_queries=og, altered_queries=alt,
                  qrels_og={q: v for q, v in probe.qrels_og.items() if q in ids})
    t0 = time.perf_counter()
    res = evaluate_pairs(system, sub, k=100)
    return {
        "queries": len(og),
        "ndcg@10_original": round(res.ndcg10_og, 4),
        "p_mrr": round(res.p_mrr.mean, 4),
        "changed_pairs": res.p_mrr.n_pairs,
        "queries_with_p_mrr_nonzero": sum(v != 0 for v in res.p_mrr.per_query.values()),
        "seconds": round(time.perf_counter() - t0, 1),
    }


class RerankTop:
    """``first`` k deep, its top ``depth`` reordered by ``reranker``, the rest kept below."""

    def __init__(self, first: object, reranker: object, depth: int) -> None:
        self.first, self.reranker, self.depth = first, reranker, depth

    def retrieve_batch(self, queries: list, k: int) -> list:
        out = []
        for r in self.first.retrieve_batch(queries, k):
            head = self.reranker.rerank(r.top(self.depth))
            floor = min(head.scores, default=0.0)
            tail = [h.model_copy(update={"score": floor - 1 - i})
                    for i, h in enumerate(r.hits[self.depth:])]
            out.append(head.model_copy(update={"hits": head.hits + tuple(tail)}))
        return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(DATA / "scifact"))
    ap.add_argument("--think-queries", type=int, default=30)
    ap.add_argument("--rerank-depth", type=int, default=20)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--followir", default=None,
                    help="a FollowIR-format folder (evals.pmrr.load_followir) instead of the probe")
    ap.add_argument("--systems", default="bm25,minilm,think,rerank", help="comma-separated subset")
    args = ap.parse_args()
    chosen = set(args.systems.split(","))
    import torch

    torch.set_num_threads(args.threads)
    probe = load_followir(args.followir) if args.followir else scifact_stance_probe(args.data)
    n = args.think_queries
    out: dict[str, object] = {"probe": probe.summary(), "think_queries": n, "systems": {}}
    systems: dict[str, object] = out["systems"]  # type: ignore[assignment]

    def record(name: str, system: object, limit: int | None = None) -> None:
        systems[name] = score(system, probe, limit)
        print(name, json.dumps(systems[name]), file=sys.stderr, flush=True)  # partial results

    if "bm25" in chosen:
        bm25 = BM25Retriever().index(probe.corpus)
        record("bm25", bm25)
        record(f"bm25_first{n}", bm25, n)
    if "minilm" in chosen:
        from types import SimpleNamespace

        from bench_reference import dense_index

        name = probe.name if args.followir else "scifact"  # the stance probe is all of scifact
        dense, index_s = dense_index(name, SimpleNamespace(corpus=probe.corpus), "auto")
        out["minilm_index_s"] = index_s  # None: reused from the cache
        record("minilm", dense)
        record(f"minilm_first{n}", dense, n)
        dense.instruction_template = "{instruction} {query}"  # same index, instruction prepended
        record("minilm_instruction_prepended", dense)
    if "think" in chosen:
        gen = TransformersGenerator("smollm2-135m", max_new_tokens=48)
        think = ThinkRetriever(BM25Retriever(), gen, mode="fusion").index(probe.corpus)
        record(f"think_smollm2_bm25_fusion_first{n}", think, n)
    if "rerank" in chosen:
        llm = LLMPointwiseReranker(backend="transformers", batch_size=10)
        if probe.candidates:  # FollowIR's protocol: rerank the given top_ranked lists
            record(f"smollm2_pointwise_top_ranked_first{n}", llm, n)
        else:
            system = RerankTop(BM25Retriever().index(probe.corpus), llm, args.rerank_depth)
            record(f"bm25_smollm2_pointwise_top{args.rerank_depth}_first{n}", system, n)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
