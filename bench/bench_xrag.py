"""xRAG vs text contexts on SciFact claim verification with the gold abstract, SmolLM2-135M.

Cheng et al., "xRAG: Extreme Context Compression for Retrieval-augmented Generation with One
Token", NeurIPS 2024. For ``--claims`` SciFact *test* (claim, gold abstract, label) rows
(``evidence.jsonl``; none of them seen in training), the frozen SmolLM2-135M-Instruct answers
"Is the claim true according to the background? Answer Yes or No." (the prompt the projector was
instruction-tuned on, :data:`rag.generators.xrag_train.VERIFY`) with as background:

* ``no_context``: nothing (the background line is empty);
* ``full_text``: the abstract (title + text);
* ``extractive_25``: ``ExtractiveCompressor(ratio=0.25)`` of the abstract for the claim;
* ``xrag``: one xRAG token (``XRAGCompressor(drop_title=True)``, the trained projector);
* ``xrag_untrained``: the same with a freshly initialised projector (a control: does training
  make the token usable at all?).

The answer is the more probable of the next tokens ``Yes`` / ``No`` (greedy decoding's choice
between the two labels). Reported: accuracy, balanced accuracy (mean per-label recall; the labels
are unbalanced, so always answering Yes scores the majority rate), the share of Yes answers, and
the LLM input positions (prompt tokens; one per xRAG token) in total and for the context alone.

    OMP_NUM_THREADS=1 python bench/bench_xrag.py    # --projector: <bench cache>/research/...
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from locations import DATA as DATASETS
from locations import cache

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DATA = DATASETS / "scifact"


def rows(n: int) -> list[tuple[str, object, str]]:
    """The first ``n`` test (claim, gold document, label) rows, one per claim."""
    from rag.index.persist import read_documents, read_jsonl

    docs = {d.id: d for d in read_documents(DATA / "corpus.jsonl")}
    claims = {str(r["_id"]): r["text"] for r in read_jsonl(DATA / "queries.jsonl")}
    out, seen = [], set()
    for r in read_jsonl(DATA / "evidence.jsonl"):
        q = str(r["query-id"])
        if r["split"] != "test" or q in seen or q not in claims:
            continue
        seen.add(q)
        out.append(
            (claims[q], docs[str(r["corpus-id"])], "Yes" if r["label"] == "SUPPORT" else "No")
        )
        if len(out) == n:
            break
    return out


def contexts(data, minilm) -> dict[str, list[str]]:  # noqa: ANN001
    from rag.compressors import ExtractiveCompressor, XRAGCompressor
    from rag.core.types import Hit, Query, Ranking

    ext = ExtractiveCompressor(ratio=0.25, encoder=minilm)
    xr = XRAGCompressor(encoder=minilm, drop_title=True)
    out: dict[str, list[str]] = {"no_context": [], "full_text": [], "extractive_25": [], "xrag": []}
    for claim, doc, _ in data:
        r = Ranking(query=Query(text=claim), hits=(Hit(document=doc, score=1.0),))
        out["no_context"].append("")
        out["full_text"].append(doc.full_text)
        e = ext.compress(r).hits[0].document
        out["extractive_25"].append(f"{e.title} {e.text}" if e.title else e.text)
        out["xrag"].append(xr.compress(r).hits[0].document.text)
    out["xrag_untrained"] = out["xrag"]
    return out


def score(gen, data, ctxs: list[str]) -> dict:  # noqa: ANN001
    import torch

    from rag.generators.xrag_train import SYSTEM, VERIFY

    yes = gen.tokenizer("Yes", add_special_tokens=False)["input_ids"][0]
    no = gen.tokenizer("No", add_special_tokens=False)["input_ids"][0]
    preds, positions = [], []
    for (claim, _, _), ctx in zip(data, ctxs, strict=True):
        user = VERIFY.replace("{claim}", claim).replace("{ctx}", ctx)
        emb, _ = gen.prompt_embeds(
            [{"role": "system", "content": SYSTEM}, {"role": "user", "content": user}]
        )
        with torch.inference_mode():
            logits = gen.lm(inputs_embeds=emb).logits[0, -1]
        preds.append("Yes" if logits[yes] >= logits[no] else "No")
        positions.append(int(emb.shape[1]))
    gold = [g for _, _, g in data]
    acc = float(np.mean([p == g for p, g in zip(preds, gold, strict=True)]))
    recalls = [
        np.mean([p == g for p, g in zip(preds, gold, strict=True) if g == lab])
        for lab in ("Yes", "No")
        if lab in gold
    ]
    return {
        "accuracy": round(acc, 4),
        "balanced_accuracy": round(float(np.mean(recalls)), 4),
        "yes_rate": round(float(np.mean([p == "Yes" for p in preds])), 4),
        "llm_positions_mean": round(float(np.mean(positions)), 1),
        "_positions": positions,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--projector", default=str(cache("research") / "xrag-projector"))
    ap.add_argument("--claims", type=int, default=50)
    ap.add_argument("--paraphrase-samples", type=int, default=2)
    a = ap.parse_args()
    import torch

    torch.set_num_threads(1)
    from rag.core.encoders import TransformerEncoder
    from rag.generators import XRAGGenerator
    from rag.generators.xrag_projector import load_projector, new_projector, save_projector
    from rag.generators.xrag_train import PARAPHRASE, SYSTEM

    t0 = time.time()
    data = rows(a.claims)
    minilm = TransformerEncoder().load()
    ctx = contexts(data, minilm)
    gen = XRAGGenerator(projector=a.projector, max_new_tokens=24).load()
    untrained_dir = Path(a.projector).parent / "xrag-projector-untrained"
    if not (untrained_dir / "projector.json").exists():
        save_projector(
            new_projector(384, gen.proj.d_out, seed=0),
            untrained_dir,
            {"note": "freshly initialised (seed 0), the training run's starting point"},
        )
    results = {}
    for name, texts in ctx.items():
        if name == "xrag_untrained":
            gen.proj = load_projector(untrained_dir)[0]
        results[name] = score(gen, data, texts)
        print(
            name,
            {k: v for k, v in results[name].items() if k != "_positions"},
            file=sys.stderr,
            flush=True,
        )
    gen.proj = load_projector(a.projector)[0]
    base = results["no_context"]["_positions"]
    for r in results.values():
        r["context_positions_mean"] = round(
            float(np.mean([p - b for p, b in zip(r.pop("_positions"), base, strict=True)])), 1
        )
    samples = []
    for claim, doc, _ in data[: a.paraphrase_samples]:
        tok = ctx["xrag"][[c for c, _, _ in data].index(claim)]
        msgs = [
            {"role": "system", "content": SYSTEM},
            {"role": "user", "content": PARAPHRASE.replace("{ctx}", tok)},
        ]
        samples.append({"doc": doc.id, "title": doc.title, "xrag_paraphrase": gen.generate(msgs)})
    gold = [g for _, _, g in data]
    print(
        json.dumps(
            {
                "claims": len(data),
                "labels": {"Yes": gold.count("Yes"), "No": gold.count("No")},
                "majority_rate": round(max(gold.count("Yes"), gold.count("No")) / len(gold), 4),
                "llm": "smollm2-135m (fp32, frozen)",
                "projector": gen.manifest.get("stage1", {})
                and {
                    "stage1_steps": gen.manifest["stage1"]["steps"],
                    "stage2_steps": gen.manifest["stage2"]["steps"],
                    "train_seconds": round(
                        gen.manifest["stage1"]["seconds"] + gen.manifest["stage2"]["seconds"], 1
                    ),
                },
                "conditions": results,
                "paraphrase_samples": samples,
                "wall_s": round(time.time() - t0, 1),
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
