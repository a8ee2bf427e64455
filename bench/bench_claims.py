"""SciFact claim verification with SmolLM2: full vs compressed context, printed as JSON.

    python bench/bench_claims.py                       # every test claim with evidence
    python bench/bench_claims.py --claims 60 --gen-claims 20 --shots 0

Task: SciFact (Wadden et al., EMNLP 2020) test claims that have evidence (``evidence.jsonl``,
split ``test``); a claim's label is its evidence label (claims whose documents disagree are
skipped and counted). Context: the claim's gold rationale abstracts plus ``--distractors`` BM25
top-ranked abstracts that are not evidence, in a fixed pseudo-random order, so a citation can
miss. Conditions:

* ``full``: the abstracts as they are (title + text, escaped and numbered like the answer prompt);
* ``extractive50``: the same contexts after ``ExtractiveCompressor(ratio=0.5)`` (RECOMP-style,
  MiniLM, global budget), with its measured token ratio and rationale-sentence survival;
* ``full+Nshot`` (``--shots N``): ``full`` plus N demonstrations retrieved by BM25 from the
  *train* claims (UDR-style selection; each shows the rationale sentences and the gold answer).

Prediction (``--mode``): the label whose first token is more probable as the assistant's first
token (``rag.pipeline.claims.label_scores``). On the first ``--gen-claims`` claims the model also
generates freely (greedy, 12 tokens): label parsed from the text, and **citation precision** = cited
markers that point at a gold rationale abstract / all markers it wrote (out-of-range ones count as
wrong). Baseline: always the majority label of the evaluated claims. Runs on 1 CPU thread by
default.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from collections import Counter
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from evals.compression import content_survival, scifact_rationale_units  # noqa: E402
from rag.core.types import Document, Hit, Query, Ranking  # noqa: E402
from rag.index.persist import read_jsonl  # noqa: E402
from rag.pipeline.citations import resolve  # noqa: E402
from rag.pipeline.claims import LABELS, claim_messages, label_scores, parse_label  # noqa: E402
from rag.pipeline.demonstrations import DemonstrationSelector  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "scifact"


def claims_with_evidence(split: str) -> tuple[dict[str, tuple[str, list[str]]], int]:
    """``qid -> (label, [gold doc ids])`` for claims whose evidence agrees; and #mixed skipped."""
    labels: dict[str, set[str]] = {}
    docs: dict[str, list[str]] = {}
    for row in read_jsonl(DATA / "evidence.jsonl"):
        if row["split"] != split:
            continue
        q = str(row["query-id"])
        labels.setdefault(q, set()).add(row["label"])
        docs.setdefault(q, [])
        if str(row["corpus-id"]) not in docs[q]:
            docs[q].append(str(row["corpus-id"]))
    out = {q: (next(iter(lab)), docs[q]) for q, lab in labels.items() if len(lab) == 1}
    return out, sum(len(lab) > 1 for lab in labels.values())


def order_key(qid: str, doc_id: str) -> str:
    return hashlib.sha256(f"{qid}/{doc_id}".encode()).hexdigest()


def f1_macro(gold: list[str], pred: list[str | None]) -> float:
    scores = []
    for lbl in LABELS:
        tp = sum(g == lbl and p == lbl for g, p in zip(gold, pred))
        fp = sum(g != lbl and p == lbl for g, p in zip(gold, pred))
        fn = sum(g == lbl and p != lbl for g, p in zip(gold, pred))
        scores.append(2 * tp / (2 * tp + fp + fn) if tp else 0.0)
    return round(sum(scores) / len(scores), 4)


def accuracy(gold: list[str], pred: list[str | None]) -> float:
    return round(sum(g == p for g, p in zip(gold, pred)) / len(gold), 4) if gold else float("nan")


def train_demos() -> list[dict]:
    """Train claims as demonstrations: rationale sentences as context, gold label + marker."""
    sentences = {str(r["_id"]): r["sentences"] for r in read_jsonl(DATA / "sentences.jsonl")}
    claims = {str(r["_id"]): r["text"] for r in read_jsonl(DATA / "queries.jsonl")}
    by_q: dict[str, list[dict]] = {}
    for row in read_jsonl(DATA / "evidence.jsonl"):
        if row["split"] == "train" and str(row["query-id"]) in claims:
            by_q.setdefault(str(row["query-id"]), []).append(row)
    demos = []
    for q, rows in by_q.items():
        if len({r["label"] for r in rows}) != 1:
            continue
        r = rows[0]
        text = " ".join(sentences[str(r["corpus-id"])][i] for i in r["sentences"])
        demos.append(
            {"id": q, "input": claims[q], "output": f"{r['label']} [1]", "context": [text]}
        )
    return demos


def run_condition(gen, name, items, gold_docs, gen_n, selector=None) -> dict:
    gold, pred, gen_pred, precise, marks, citing = [], [], [], 0, 0, 0
    t0 = time.perf_counter()
    for i, (q, label, hits) in enumerate(items):
        demos = selector.select(q.text) if selector is not None else ()
        msgs = claim_messages(q.text, hits, demos)
        scores = label_scores(gen, msgs)
        gold.append(label)
        pred.append(max(scores, key=scores.get))
        if i < gen_n:
            text = gen.generate(msgs, max_new_tokens=12, stop=["\n"])
            gen_pred.append(parse_label(text))
            cites, bad = resolve(text, hits)
            marks += len(cites) + len(bad)
            precise += sum(c.document_id in gold_docs[q.id] for c in cites)
            citing += bool(cites or bad)
        if (i + 1) % 10 == 0:
            print(f"{name}: {i + 1}/{len(items)}", file=sys.stderr, flush=True)
    row = {
        "condition": name,
        "claims": len(gold),
        "accuracy": accuracy(gold, pred),
        "macro_f1": f1_macro(gold, pred),
        "predicted_support_share": round(pred.count("SUPPORT") / len(pred), 4),
        "seconds_per_claim": round((time.perf_counter() - t0) / max(len(gold), 1), 2),
    }
    if gen_n:
        g = gold[: len(gen_pred)]
        row["generation"] = {
            "claims": len(gen_pred),
            "accuracy": accuracy(g, gen_pred),
            "macro_f1": f1_macro(g, gen_pred),
            "unparsed_label": sum(p is None for p in gen_pred),
            "answers_with_a_marker": citing,
            "citation_precision": round(precise / marks, 4) if marks else None,
        }
    print(json.dumps(row), file=sys.stderr, flush=True)  # partial results survive a long run
    return row


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--claims", type=int, default=0, help="first N test claims (0: all)")
    ap.add_argument("--gen-claims", type=int, default=30, help="claims also answered freely")
    ap.add_argument("--distractors", type=int, default=2)
    ap.add_argument("--shots", type=int, default=2, help="few-shot demos (0: skip condition)")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    from rag.compressors import ExtractiveCompressor
    from rag.generators import TransformersGenerator
    from retrievers import BM25Retriever

    claims, mixed = claims_with_evidence("test")
    texts = {str(r["_id"]): r["text"] for r in read_jsonl(DATA / "queries.jsonl")}
    corpus = {str(r["_id"]): r for r in read_jsonl(DATA / "corpus.jsonl")}
    qids = sorted(claims, key=int)[: args.claims or None]
    bm25 = BM25Retriever().index(
        [Document(id=i, text=r["text"], title=r.get("title", "")) for i, r in corpus.items()]
    )
    items, gold_docs = [], {}
    for q in qids:
        label, gold = claims[q]
        query = Query(id=q, text=texts[q])
        extra = [
            i for i in bm25.retrieve(query, k=len(gold) + args.distractors).ids if i not in gold
        ]
        ids = sorted([*gold, *extra[: args.distractors]], key=lambda d: order_key(q, d))
        hits = tuple(
            Hit(
                document=Document(id=d, text=corpus[d]["text"], title=corpus[d].get("title", "")),
                score=1.0,
            )
            for d in ids
        )
        items.append((query, label, hits))
        gold_docs[q] = set(gold)
    print(f"{len(items)} claims ({mixed} with mixed labels skipped)", file=sys.stderr, flush=True)

    comp = ExtractiveCompressor(ratio=0.5)
    compressed = [comp.compress(Ranking(query=q, hits=h)) for q, _, h in items]
    print("compressed", file=sys.stderr, flush=True)
    tin = sum(
        r.hits[0].document.metadata["compression"]["ranking_tokens_in"]
        for r in compressed
        if r.hits
    )
    tout = sum(
        r.hits[0].document.metadata["compression"]["ranking_tokens_out"]
        for r in compressed
        if r.hits
    )
    units = scifact_rationale_units(DATA)

    gen = TransformersGenerator(max_new_tokens=12).load()
    gold_labels = [lbl for _, lbl, _ in items]
    majority = Counter(gold_labels).most_common(1)[0][0]
    rows = [
        {
            "condition": f"majority baseline (always {majority})",
            "claims": len(items),
            "accuracy": accuracy(gold_labels, [majority] * len(items)),
            "macro_f1": f1_macro(gold_labels, [majority] * len(items)),
        }
    ]
    rows.append(run_condition(gen, "full", items, gold_docs, args.gen_claims))
    comp_items = [(q, lbl, r.hits) for (q, lbl, _), r in zip(items, compressed)]
    row = run_condition(gen, "extractive50", comp_items, gold_docs, args.gen_claims)
    row["token_ratio"] = round(tout / tin, 4)
    row["rationale_survival"] = round(content_survival(compressed, units).mean, 4)
    rows.append(row)
    if args.shots:
        selector = DemonstrationSelector(demos=train_demos(), k=args.shots)
        rows.append(
            run_condition(
                gen, f"full+{args.shots}shot", items, gold_docs, args.gen_claims, selector
            )
        )
    out = {
        "dataset": "scifact/test claims with evidence",
        "model": "SmolLM2-135M-Instruct (fp32, CPU)",
        "context": f"gold rationale abstracts + {args.distractors} BM25 distractors",
        "mixed_label_claims_skipped": mixed,
        "prediction": "argmax of first-token logprob, SUPPORT vs CONTRADICT",
        "results": rows,
    }
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
