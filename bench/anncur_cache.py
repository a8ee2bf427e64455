"""Token vectors of a shared collection, computed once with the late-interaction scorer's encoder.

ANNCUR's benchmark needs the exact late-interaction (MaxSim) score of every (query, document) pair
of SciFact (train anchors and test queries x 5,183 documents). Scoring through
``LateInteractionReranker.rerank`` would re-concatenate all token matrices per query, so the
document token vectors are encoded ONCE with the reranker's own :class:`TokenEncoder` (same
settings), rounded to float16 exactly as the reranker rounds them, and stored flat:

    <cache>/late_<set>.tokens.npy   (T, 384) float16, all documents' token vectors concatenated
    <cache>/late_<set>.offsets.npy  (N + 1,) int64 row offsets
    <cache>/late_<set>.ids.json     document ids in row order

Then MaxSim over the whole collection is :class:`retrievers.kernels.maxsim.PackedTokens`
(one matmul per chunk). ``bench_anncur.py`` checks on a sample that these scores equal
``LateInteractionReranker._score``.

    OMP_NUM_THREADS=1 python bench/anncur_cache.py scifact med
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import numpy as np
from locations import DATA, cache

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CACHE = cache("research")


def paths(name: str) -> tuple[Path, Path, Path]:
    return (
        CACHE / f"late_{name}.tokens.npy",
        CACHE / f"late_{name}.offsets.npy",
        CACHE / f"late_{name}.ids.json",
    )


def build(name: str, batch: int = 64) -> None:
    from rag.index.persist import read_documents
    from rerankers import LateInteractionReranker

    tok_p, off_p, ids_p = paths(name)
    if ids_p.exists():
        return
    CACHE.mkdir(parents=True, exist_ok=True)
    docs = read_documents(DATA / name / "corpus.jsonl")
    enc = LateInteractionReranker().encoder.load()
    texts = [d.full_text for d in docs]
    lens = [len(x) for x in enc._tokenize(texts, "document")]  # plain convention keeps every token
    offsets = np.concatenate([[0], np.cumsum(lens)]).astype(np.int64)
    tmp = tok_p.with_suffix(".tmp.npy")
    shape = (int(offsets[-1]), int(enc.dim))
    out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float16, shape=shape)
    t0 = time.time()
    for s in range(0, len(texts), batch):
        vecs = enc.encode_documents(texts[s : s + batch])
        for j, v in enumerate(vecs):
            i = s + j
            if len(v) != lens[i]:
                raise RuntimeError(
                    f"{name}: doc {docs[i].id} has {len(v)} vectors, expected {lens[i]}"
                )
            out[offsets[i] : offsets[i + 1]] = v.astype(np.float16)
        print(f"{name}: {s + len(vecs)}/{len(texts)} docs, {time.time() - t0:.0f}s", flush=True)
    out.flush()
    del out
    os.replace(tmp, tok_p)
    np.save(off_p, offsets)
    ids_tmp = ids_p.with_suffix(".tmp")
    ids_tmp.write_text(json.dumps([d.id for d in docs]))
    os.replace(ids_tmp, ids_p)


def repair_header(path: Path) -> None:
    """Rewrite an ``.npy`` header whose shape was written as ``np.int64(n)`` (numpy 2 repr of a
    numpy integer) as a plain ``n``, in place and at the same length."""
    import re

    with open(path, "r+b") as f:
        head = f.read(10)
        n = int.from_bytes(head[8:10], "little")
        text = f.read(n).decode("latin1")
        fixed = re.sub(r"np\.int64\((\d+)\)", r"\1", text)
        if fixed != text:
            fixed = fixed.rstrip("\n").ljust(n - 1) + "\n"
            f.seek(10)
            f.write(fixed.encode("latin1"))


def load(name: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """``(tokens (T, D) float16 memmap, offsets (N + 1,), ids)``; builds the cache if missing."""
    build(name)
    tok_p, off_p, ids_p = paths(name)
    repair_header(tok_p)
    return np.load(tok_p, mmap_mode="r"), np.load(off_p), json.loads(ids_p.read_text())


if __name__ == "__main__":
    import torch

    torch.set_num_threads(1)
    for n in sys.argv[1:] or ["med", "scifact"]:
        build(n)
