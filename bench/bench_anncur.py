"""ANNCUR vs retrieve-then-rerank at equal scorer-call budgets, MiniLM late interaction as scorer.

Yadav et al., "Efficient Nearest Neighbor Search for Cross-Encoder Models using Matrix
Factorization", EMNLP 2022. Per collection and per budget ``B`` (scorer calls per test query):

* ``anncur_random``: :class:`retrievers.anncur.AnnCurRetriever`, ``k_i = B * split`` random anchor
  items, ``B - k_i`` CUR-retrieved items re-scored;
* ``anncur_bm25``: the same with query-dependent anchor items (BM25's top ``k_i``);
* ``bm25_rerank`` / ``dense_rerank``: BM25 / MiniLM-dense top ``B``, re-scored by the scorer;
* ``exhaustive``: the scorer on every document (the reference, N calls per query).

Measures: Top-k-Recall@k against the exhaustive ranking of the same scorer (k = 1, 10; the
paper's measure), nDCG@10 (pytrec_eval) and the scorer calls actually made per query (from the
outputs' ``Ranking.provenance["scorer_calls"]``).

Exact MaxSim over whole collections is affordable because document token vectors are encoded once
(``bench/anncur_cache.py``); the test-query and anchor-query score tables are computed with the
same kernel, checked on a sample against ``LateInteractionReranker`` itself, and the ANNCUR node
runs unchanged with a scorer that reads those tables (``TableScorer``).

Anchor queries: SciFact *train* claims (``qrels/train.tsv``), never test queries; MED has no
training queries, so it gets ``k_q`` zero-shot pseudo-queries cut from its corpus (the node's own
fallback).

    OMP_NUM_THREADS=1 python bench/bench_anncur.py [--sets scifact med] [--budgets 50 100 200]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import ClassVar

import numpy as np
from locations import DATA, cache

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import anncur_cache  # noqa: E402

from rag.core.nodes import BaseReranker  # noqa: E402

CACHE = anncur_cache.CACHE


class TableScorer(BaseReranker):
    """A reranker whose scores are looked up in precomputed exact late-interaction tables
    (``rows[query.id] -> (N,)`` over ``col[doc.id]``); counts the pairs it is asked for."""

    name: ClassVar[str] = ""  # not registered

    def __init__(self, rows: dict[str, np.ndarray], col: dict[str, int]) -> None:
        self.rows, self.col, self.pairs = rows, col, 0

    def _score(self, query, docs):  # noqa: ANN001
        self.pairs += len(docs)
        row = self.rows[query.id]
        return [float(row[self.col[d.id]]) for d in docs]


def maxsim_table(enc, texts: list[str], tokens, offsets, tag: str) -> np.ndarray:  # noqa: ANN001
    """Exact MaxSim ``(len(texts), N)`` of query texts against the cached documents (cached)."""
    from retrievers.kernels.maxsim import PackedTokens, offsets_of

    path = CACHE / f"{tag}.npy"
    if path.exists():
        m = np.load(path)
        if m.shape[0] == len(texts):
            return m
    q = enc.encode_queries(texts)
    m = PackedTokens(tokens, offsets, "stream").scores(np.concatenate(q), offsets_of(q))
    np.save(path.with_suffix(".tmp.npy"), m)
    os.replace(path.with_suffix(".tmp.npy"), path)
    return m


def evaluate(qrels: dict, run: dict[str, list[tuple[str, float]]]) -> float:
    import pytrec_eval

    r = {q: {d: float(s) for d, s in hits} for q, hits in run.items()}
    for q in qrels:
        r.setdefault(q, {})
    ev = pytrec_eval.RelevanceEvaluator(qrels, {"ndcg_cut.10"}).evaluate(r)
    return round(float(np.mean([v["ndcg_cut_10"] for v in ev.values()])), 4)


def topk_recall(run: dict[str, list[str]], ref: dict[str, list[str]], k: int) -> float:
    return round(float(np.mean([len(set(run[q][:k]) & set(ref[q][:k])) / k for q in ref])), 4)


def rerank_run(first: dict[str, list[str]], rows, col, budget: int) -> dict:  # noqa: ANN001
    out = {}
    for q, ids in first.items():
        cand = ids[:budget]
        s = rows[q][[col[i] for i in cand]]
        out[q] = sorted(zip(cand, s.tolist()), key=lambda x: (-x[1], x[0]))
    return out


def run_set(name: str, args: argparse.Namespace) -> dict:
    from evals.datasets import load_beir
    from rerankers import LateInteractionReranker
    from retrievers import BM25Retriever
    from retrievers.anncur import AnnCurRetriever, write_anchor_matrix

    t_start = time.time()
    ds = load_beir(DATA / name)
    docs, queries, qrels = ds.corpus, ds.queries, ds.qrels
    if args.max_queries and len(queries) > args.max_queries:  # the first ones, in file order
        queries = queries[: args.max_queries]
        qrels = {q.id: qrels[q.id] for q in queries}
    tokens, offsets, ids = anncur_cache.load(name)
    if ids != [d.id for d in docs]:
        raise RuntimeError(f"{name}: token cache order differs from the corpus")
    col = {i: c for c, i in enumerate(ids)}
    scorer = LateInteractionReranker()
    enc = scorer.encoder.load()
    if name == "scifact":
        train = load_beir(DATA / name, split="train")
        anchors = [q.text for q in train.queries]
        if args.max_anchors and len(anchors) > args.max_anchors:
            pick = np.random.default_rng(0).choice(len(anchors), args.max_anchors, replace=False)
            anchors = [anchors[j] for j in sorted(pick)]
        anchor_src = f"{len(anchors)} SciFact train claims (of {len(train.queries)})"
    else:
        probe = AnnCurRetriever(n_anchor_queries=args.pseudo_queries, seed=0)
        anchors = probe._pseudo_queries(docs)
        anchor_src = (
            f"{len(anchors)} pseudo-queries ({probe.pseudo_query_words}-word corpus windows)"
        )
    t0 = time.time()
    tag = f"exact_{name}_{len(queries)}q_{len(anchors)}a"
    both = maxsim_table(enc, [q.text for q in queries] + anchors, tokens, offsets, tag)
    s_test, r_anc = both[: len(queries)], both[len(queries) :]
    t_tables = time.time() - t0
    # the tables are the scorer's own scores: check a sample against LateInteractionReranker
    rng = np.random.default_rng(0)
    sample = [docs[j] for j in rng.choice(len(docs), size=20, replace=False)]
    worst = 0.0
    for qi in range(3):
        got = np.array(scorer._score(queries[qi], sample))
        worst = max(worst, float(np.abs(got - s_test[qi, [col[d.id] for d in sample]]).max()))
    if worst > 0.05:  # batch padding (and bf16 autocast where the CPU has it) moves the last bits
        raise RuntimeError(f"{name}: table scores differ from the reranker by {worst}")

    qids = [q.id for q in queries]
    rows = {q: s_test[i] for i, q in enumerate(qids)}
    exhaustive = {
        q: sorted(zip(ids, rows[q].tolist()), key=lambda x: (-x[1], x[0]))[:100] for q in qids
    }
    ref_ids = {q: [d for d, _ in v] for q, v in exhaustive.items()}
    bm25 = BM25Retriever().index(docs)
    bm25_ids = {
        q.id: r.ids for q, r in zip(queries, bm25.retrieve_batch(queries, k=max(args.budgets)))
    }
    dense_ids = dense_candidates(name, queries, ids, max(args.budgets))

    mat_path = CACHE / f"anchor_matrix_{name}_{len(anchors)}.npy"
    write_anchor_matrix(mat_path, r_anc, ids, anchors)
    out: dict = {
        "docs": len(docs),
        "queries": len(queries),
        "anchor_queries": anchor_src,
        "scorer": "late_interaction (MiniLM token vectors, MaxSim)",
        "table_vs_reranker_max_abs_diff": worst,
        "tables_s": round(t_tables, 1),
        "exhaustive": {"calls_per_query": len(docs), "ndcg10": evaluate(qrels, exhaustive)},
        "budgets": {},
    }
    for budget in args.budgets:
        k_i = max(1, int(budget * args.split))
        res: dict = {}
        for label, kw in (
            ("anncur_random", {}),
            ("anncur_bm25", {"anchor_items": "first_stage", "first_stage": BM25Retriever()}),
        ):
            table = TableScorer(rows, col)
            node = AnnCurRetriever(
                table, n_anchor_items=k_i, budget=budget, anchor_matrix=str(mat_path), **kw
            ).index(docs)
            t0 = time.time()
            run, calls = {}, []
            for s in range(0, len(queries), 50):
                rk = node.retrieve_batch(queries[s : s + 50], k=100)
                calls += [int(r.provenance["scorer_calls"]) for r in rk]
                run.update({r.query.id: [(h.id, h.score) for h in r.hits] for r in rk})
            ms = 1000 * (time.time() - t0) / len(queries)
            res[label] = summarise(run, ref_ids, qrels, calls, table.pairs, len(queries))
            res[label]["n_anchor_items"] = k_i
            res[label]["ms_per_query_excl_scorer"] = round(ms, 2)
        for label, first in (("bm25_rerank", bm25_ids), ("dense_rerank", dense_ids)):
            run = rerank_run(first, rows, col, budget)
            calls = [min(budget, len(first[q])) for q in qids]
            res[label] = summarise(run, ref_ids, qrels, calls, sum(calls), len(queries))
        out["budgets"][str(budget)] = res
        print(name, budget, json.dumps(res), file=sys.stderr, flush=True)
    out["wall_s"] = round(time.time() - t_start, 1)
    return out


def summarise(run, ref_ids, qrels, calls, pairs, n_queries) -> dict:  # noqa: ANN001
    ids = {q: [d for d, _ in v] for q, v in run.items()}
    return {
        "topk_recall@1": topk_recall(ids, ref_ids, 1),
        "topk_recall@10": topk_recall(ids, ref_ids, 10),
        "ndcg10": evaluate(qrels, run),
        "calls_per_query": round(pairs / n_queries, 2),
        "max_calls": int(max(calls)),
    }


def dense_candidates(name: str, queries, ids: list[str], k: int) -> dict:  # noqa: ANN001
    """MiniLM dense top-k by exact cosine, with the shared fp32 document vectors when present."""
    from rag.core.encoders import TransformerEncoder

    shared = cache("minilm")
    enc = TransformerEncoder().load()
    if (shared / f"{name}.npy").exists():
        order = json.loads((shared / f"{name}.ids.json").read_text())
        vecs = np.load(shared / f"{name}.npy")
        pos = {i: r for r, i in enumerate(order)}
        vecs = vecs[[pos[i] for i in ids]]
    else:
        from evals.datasets import load_beir

        docs = {d.id: d for d in load_beir(DATA / name).corpus}
        vecs = enc.encode([docs[i].full_text for i in ids], kind="document")
    qv = enc.encode([q.text for q in queries], kind="query")
    sims = qv @ vecs.T
    top = np.argsort(-sims, axis=1, kind="stable")[:, :k]
    return {q.id: [ids[j] for j in row] for q, row in zip(queries, top)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sets", nargs="+", default=["scifact", "med"])
    ap.add_argument("--budgets", nargs="+", type=int, default=[50, 100, 200])
    ap.add_argument("--split", type=float, default=0.5, help="share of the budget on anchor items")
    ap.add_argument("--pseudo-queries", type=int, default=200)
    ap.add_argument("--max-queries", type=int, default=0, help="first N test queries (0: all)")
    ap.add_argument("--max-anchors", type=int, default=0, help="random N train claims (0: all)")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(1)
    print(json.dumps({n: run_set(n, args) for n in args.sets}, indent=1))


if __name__ == "__main__":
    main()
