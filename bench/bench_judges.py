"""How far can judges built on the embedded SmolLM2-135M be trusted? Measured against SciFact's
human labels (``evidence.jsonl``, test split: 209 claim-abstract pairs, 138 SUPPORT, 71
CONTRADICT), with the lexical judge as a model-free baseline.

* stance: P("Support") vs P("Contradict") given the claim and its rationale sentences; accuracy
  at 0.5 (Wilson CI), the majority-class rate, and ROC AUC (bootstrap CI over pairs).
* faithfulness: for each SUPPORT pair, "is the claim supported by the context?" with the
  rationale sentences as context (human label 1) and as many random non-rationale sentences of
  the same abstract (label 0). Pairwise accuracy P(f(rationale) > f(random)) (ties 1/2,
  bootstrap CI), ROC AUC, accuracy at 0.5 (Wilson CI).
* PPI (ARES-style): estimate the share of supported items from ``--n-labelled`` human labels plus
  the judge on the rest; classical vs PPI vs PPI++ intervals, and the empirical coverage and mean
  width over 500 random labelled subsets.

    OMP_NUM_THREADS=1 python bench/bench_judges.py [--limit 0] [--n-labelled 40]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SCIFACT = ROOT.parent / "shared" / "datasets" / "scifact"


def load_pairs(limit: int) -> tuple[list[dict], dict[str, list[str]]]:
    from rag.index.persist import read_jsonl

    sentences = {str(r["_id"]): r["sentences"] for r in read_jsonl(SCIFACT / "sentences.jsonl")}
    claims = {str(r["_id"]): r["text"] for r in read_jsonl(SCIFACT / "queries.jsonl")}
    rows = [r for r in read_jsonl(SCIFACT / "evidence.jsonl") if r["split"] == "test"]
    rows.sort(key=lambda r: (int(r["query-id"]), int(r["corpus-id"])))
    pairs = [
        {"claim": claims[str(r["query-id"])], "doc": str(r["corpus-id"]),
         "label": r["label"], "rationale": sorted(r["sentences"])}
        for r in rows
    ]
    return (pairs[:limit] if limit else pairs), sentences


def auc(pos: np.ndarray, neg: np.ndarray) -> float:
    """Mann-Whitney ROC AUC, ties counted 1/2."""
    diff = pos[:, None] - neg[None, :]
    return float(((diff > 0) + 0.5 * (diff == 0)).mean())


def auc_ci(scores: np.ndarray, labels: np.ndarray, seed: int = 0, n: int = 2000) -> list[float]:
    rng = np.random.default_rng(seed)
    vals = []
    for _ in range(n):
        i = rng.integers(0, len(scores), len(scores))
        s, y = scores[i], labels[i]
        if 0 < y.sum() < len(y):
            vals.append(auc(s[y == 1], s[y == 0]))
    return [round(float(v), 4) for v in np.quantile(vals, [0.025, 0.975])]


def summarise(scores: np.ndarray, labels: np.ndarray) -> dict:
    from evals.stats import wilson_ci

    correct = int(((scores >= 0.5) == (labels == 1)).sum())
    lo, hi = wilson_ci(correct, len(labels))
    return {
        "n": len(labels),
        "accuracy@0.5": round(correct / len(labels), 4),
        "accuracy_wilson95": [round(lo, 4), round(hi, 4)],
        "majority_rate": round(max(labels.mean(), 1 - labels.mean()), 4),
        "auc": round(auc(scores[labels == 1], scores[labels == 0]), 4),
        "auc_bootstrap95": auc_ci(scores, labels),
        "mean_score_pos": round(float(scores[labels == 1].mean()), 4),
        "mean_score_neg": round(float(scores[labels == 0].mean()), 4),
    }


def faithfulness_items(pairs, sentences, seed: int):
    rng = np.random.default_rng(seed)
    items = []
    for p in pairs:
        if p["label"] != "SUPPORT":
            continue
        sents = sentences[p["doc"]]
        others = [i for i in range(len(sents)) if i not in p["rationale"]]
        if not others:
            continue
        k = min(len(p["rationale"]), len(others))
        rand = sorted(rng.choice(others, size=k, replace=False).tolist())
        items.append((p["claim"], " ".join(sents[i] for i in p["rationale"]),
                      " ".join(sents[i] for i in rand)))
    return items


def judge_all(judge, pairs, sentences, items) -> dict:
    from evals.stats import bootstrap_ci

    claims = [p["claim"] for p in pairs]
    evidence = [" ".join(sentences[p["doc"]][i] for i in p["rationale"]) for p in pairs]
    out: dict = {}
    t = time.perf_counter()
    if hasattr(judge, "p_stance"):
        stance = judge.p_stance(claims, evidence)
        y = np.array([p["label"] == "SUPPORT" for p in pairs], dtype=np.float64)
        out["stance"] = summarise(stance, y)
    n = len(items)
    ctx = [i[1] for i in items] + [i[2] for i in items]
    faith = judge.p_support(ctx, [i[0] for i in items] * 2)
    pos, neg = faith[:n], faith[n:]
    wins = (pos > neg) + 0.5 * (pos == neg)
    labels = np.r_[np.ones(n), np.zeros(n)]
    out["faithfulness"] = {
        **summarise(faith, labels),
        "pairwise_accuracy": round(float(wins.mean()), 4),
        "pairwise_bootstrap95": [round(v, 4) for v in bootstrap_ci(wins)],
    }
    out["seconds"] = round(time.perf_counter() - t, 1)
    out["_faith_scores"] = faith
    return out


def ppi_block(y: np.ndarray, f: np.ndarray, n_labelled: int, trials: int = 500) -> dict:
    from evals.ppi import classical_mean_ci, ppi_experiment, ppi_mean_ci

    one = ppi_experiment(y, f, n_labelled, seed=0)
    cover = {"classical": [], "ppi": [], "ppi++": []}
    width = {"classical": [], "ppi": [], "ppi++": []}
    rng = np.random.default_rng(1)
    for _ in range(trials):
        idx = rng.permutation(len(y))
        a, b = idx[:n_labelled], idx[n_labelled:]
        for key, ci in (("classical", classical_mean_ci(y[a])),
                        ("ppi", ppi_mean_ci(y[a], f[a], f[b])),
                        ("ppi++", ppi_mean_ci(y[a], f[a], f[b], lam="auto"))):
            cover[key].append(bool(ci.lo <= y.mean() <= ci.hi))
            width[key].append(ci.width)
    one["over_random_subsets"] = {
        k: {"coverage": round(float(np.mean(cover[k])), 3),
            "mean_width": round(float(np.mean(width[k])), 4)} for k in cover
    }
    one["trials"] = trials
    return one


def stance_yesno(pairs, sentences) -> int:
    from rag.pipeline.judges import LLMJudge

    judge = LLMJudge("smollm2-135m", device="cpu")
    evidence = [" ".join(sentences[p["doc"]][i] for i in p["rationale"]) for p in pairs]
    t = time.perf_counter()
    p_yes = judge.p_support(evidence, [p["claim"] for p in pairs])
    y = np.array([p["label"] == "SUPPORT" for p in pairs], dtype=np.float64)
    out = {"task": "stance as P(Yes) of judge_faithfulness(context=rationale, statement=claim)",
           "n_pairs": len(pairs), "stance_yesno": summarise(p_yes, y),
           "seconds": round(time.perf_counter() - t, 1), "provenance": judge.provenance()}
    print(json.dumps(out, indent=1))
    return 0


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--limit", type=int, default=0, help="first N test pairs only (0 = all)")
    ap.add_argument("--n-labelled", type=int, default=40)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--stance-yesno", action="store_true",
                    help="only the stance task, framed as the faithfulness judge: P(Yes) to "
                    "'is the claim supported by the evidence?' (SUPPORT = 1, CONTRADICT = 0)")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
    from rag.pipeline.judges import LexicalJudge, LLMJudge

    pairs, sentences = load_pairs(args.limit)
    if args.stance_yesno:
        return stance_yesno(pairs, sentences)
    items = faithfulness_items(pairs, sentences, args.seed)
    report: dict = {"dataset": "scifact evidence.jsonl, test split", "n_pairs": len(pairs),
                    "n_faithfulness_items": 2 * len(items), "judges": {}}
    llm = LLMJudge("smollm2-135m", device="cpu")
    for judge in (LexicalJudge(), llm):
        res = judge_all(judge, pairs, sentences, items)
        faith = res.pop("_faith_scores")
        y = np.r_[np.ones(len(items)), np.zeros(len(items))]
        res["ppi_share_supported"] = {
            "probability_judge": ppi_block(y, faith, args.n_labelled),
            "thresholded_judge": ppi_block(y, (faith >= 0.5).astype(float), args.n_labelled),
        }
        report["judges"][judge.name] = res
        print(f"done {judge.name}", file=sys.stderr, flush=True)
    report["llm_provenance"] = llm.provenance()
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
