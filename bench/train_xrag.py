"""Train the xRAG projector (MiniLM 384-d -> SmolLM2-135M 576-d) on CPU, the paper's two stages.

Cheng et al., "xRAG: Extreme Context Compression for Retrieval-augmented Generation with One
Token", NeurIPS 2024 (arXiv:2405.13792); the recipe is in :mod:`rag.generators.xrag_train`.

Data (offline, shared SciFact; the documents and claims of SciFact's *test* split are never used):

* stage 1, paraphrase pretraining: SciFact abstracts (title + text embedded by MiniLM, the target
  is the abstract text, first ``--max-target`` tokens);
* stage 2, context-aware instruction tuning: SciFact *train* claims with their evidence abstract
  (``evidence.jsonl`` split ``train``), target ``Yes`` (SUPPORT) / ``No`` (CONTRADICT), plus the
  self-distillation KL towards the LLM reading the abstract text when ``--alpha-kl > 0``.

The LLM and the encoder stay frozen. Weights go to ``--out`` (outside git), with a manifest of the
steps, examples, losses and wall time:

    OMP_NUM_THREADS=1 python bench/train_xrag.py --out "$CACHE/research/xrag-projector" \\
        --steps1 40 --steps2 30 --batch 4
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
from locations import DATA as DATASETS
from locations import cache

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DATA = DATASETS / "scifact"
MINILM_CACHE = cache("minilm")


def scifact() -> tuple[dict, dict, list[dict]]:
    from rag.index.persist import read_documents, read_jsonl

    docs = {d.id: d for d in read_documents(DATA / "corpus.jsonl")}
    claims = {str(r["_id"]): r["text"] for r in read_jsonl(DATA / "queries.jsonl")}
    evidence = read_jsonl(DATA / "evidence.jsonl")
    return docs, claims, evidence


def embed(docs: list, cache: Path) -> np.ndarray:
    """MiniLM vectors ``(n, 384)`` of ``docs`` (``full_text``, the compressor's input): read from
    the bench cache's ``minilm/scifact.npy`` when present, else encoded and cached."""
    shared = MINILM_CACHE / "scifact.npy"
    if shared.exists() and (MINILM_CACHE / "scifact.ids.json").exists():
        ids = json.loads((MINILM_CACHE / "scifact.ids.json").read_text())
        row = {i: r for r, i in enumerate(ids)}
        return np.load(shared)[[row[d.id] for d in docs]]
    key = cache / f"xrag_vecs_{len(docs)}_{docs[0].id}_{docs[-1].id}.npy"
    if key.exists():
        return np.load(key)
    from rag.core.encoders import TransformerEncoder

    v = TransformerEncoder().load().encode([d.full_text for d in docs], kind="document")
    cache.mkdir(parents=True, exist_ok=True)
    np.save(key.with_suffix(".tmp.npy"), v)
    os.replace(key.with_suffix(".tmp.npy"), key)
    return v


def datasets(n1: int, n2: int, seed: int, cache: Path) -> tuple[list, list, dict]:
    from rag.generators.xrag_projector import roundtrip
    from rag.generators.xrag_train import PARAPHRASE, VERIFY, Example

    docs, claims, evidence = scifact()
    test_docs = {str(r["corpus-id"]) for r in evidence if r["split"] == "test"}
    rng = np.random.default_rng(seed)
    pool = sorted(i for i in docs if i not in test_docs and docs[i].text.strip())
    s1_docs = [docs[pool[j]] for j in rng.choice(len(pool), size=n1, replace=False)]
    rows = [r for r in evidence if r["split"] == "train" and str(r["query-id"]) in claims]
    rows = [rows[j] for j in rng.permutation(len(rows))[:n2]]
    s2_docs = [docs[str(r["corpus-id"])] for r in rows]
    vecs = roundtrip(embed(s1_docs + s2_docs, cache))  # as the generator will see them
    s1 = [
        Example(v, PARAPHRASE, d.text, d.full_text) for d, v in zip(s1_docs, vecs[:n1], strict=True)
    ]
    s2 = [
        Example(
            v,
            VERIFY.replace("{claim}", claims[str(r["query-id"])]),
            "Yes" if r["label"] == "SUPPORT" else "No",
            d.full_text,
        )
        for r, d, v in zip(rows, s2_docs, vecs[n1:], strict=True)
    ]
    data = {
        "stage1": f"{n1} SciFact abstracts (test-evidence abstracts excluded)",
        "stage2": f"{n2} SciFact train (claim, evidence abstract, label) rows, "
        f"{sum(e.target == 'Yes' for e in s2)} Yes / {sum(e.target == 'No' for e in s2)} No",
    }
    return s1, s2, data


def run_stage(lm, tok, proj, examples, steps, batch, lr, max_target, alpha_kl, minutes, log):
    import torch

    from rag.generators.xrag_train import batch_loss

    opt = torch.optim.AdamW(proj.parameters(), lr=lr, weight_decay=0.0)
    losses, t0 = [], time.time()
    for step in range(steps):
        if time.time() - t0 > minutes * 60:
            break
        b = [examples[(step * batch + j) % len(examples)] for j in range(batch)]
        loss = batch_loss(lm, tok, proj, b, max_target=max_target, alpha_kl=alpha_kl)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(proj.parameters(), 1.0)
        opt.step()
        losses.append(float(loss))
        print(
            f"{log} step {step + 1}/{steps} loss {losses[-1]:.3f} {time.time() - t0:.0f}s",
            flush=True,
        )
    return {
        "steps": len(losses),
        "examples": len(losses) * batch,
        "lr": lr,
        "seconds": round(time.time() - t0, 1),
        "losses": [round(x, 4) for x in losses],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True, help="folder for projector.safetensors + .json")
    ap.add_argument("--steps1", type=int, default=40)
    ap.add_argument("--steps2", type=int, default=30)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--lr1", type=float, default=3e-3)
    ap.add_argument("--lr2", type=float, default=1e-3)
    ap.add_argument("--max-target", type=int, default=32)
    ap.add_argument("--alpha-kl", type=float, default=0.0)
    ap.add_argument("--minutes", type=float, default=7.5, help="wall-time cap per stage")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()

    import torch

    torch.set_num_threads(a.threads)
    from rag.core.models import load_hf
    from rag.generators.xrag_projector import new_projector, save_projector
    from rag.generators.xrag_train import freeze

    s1, s2, data = datasets(a.steps1 * a.batch, a.steps2 * a.batch, a.seed, Path(a.out).parent)
    tok, lm, _ = load_hf("smollm2-135m", "AutoModelForCausalLM", "cpu", dtype=torch.float32)
    freeze(lm)
    proj = new_projector(384, lm.get_input_embeddings().weight.shape[1], seed=a.seed)
    st1 = run_stage(
        lm, tok, proj, s1, a.steps1, a.batch, a.lr1, a.max_target, 0.0, a.minutes, "stage1"
    )
    st2 = run_stage(
        lm, tok, proj, s2, a.steps2, a.batch, a.lr2, a.max_target, a.alpha_kl, a.minutes, "stage2"
    )
    manifest = {
        "paper": "xRAG, Cheng et al. 2024 (arXiv:2405.13792)",
        "encoder": "all-MiniLM-L6-v2 (TransformerEncoder defaults, title + text)",
        "llm": "smollm2-135m (HuggingFaceTB/SmolLM2-135M-Instruct, fp32)",
        "device": "cpu",
        "threads": a.threads,
        "batch": a.batch,
        "max_target_tokens": a.max_target,
        "alpha_kl": a.alpha_kl,
        "data": data,
        "stage1": st1,
        "stage2": st2,
        "command": " ".join(sys.argv),
    }
    save_projector(proj, a.out, manifest)
    print(json.dumps({k: v for k, v in manifest.items()}, indent=1))


if __name__ == "__main__":
    main()
