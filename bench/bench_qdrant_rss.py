"""What a serving process holds for a synthetic N-document corpus whose vectors live in Qdrant.

* ``today``: ``HybridRetriever([BM25Retriever(), DenseRetriever(QdrantStore(url=...))])`` opened
  with ``load_retriever`` (what ``rag serve`` does): the vectors are in the server, but the
  process reads ``documents.jsonl`` (once for the hybrid and once per child) and the bm25s index.
* ``new``: ``QdrantHybridRetriever(url=...)``: documents, BM25 and vectors are all in the
  collection; the process holds the encoders and a client.

Each side runs in a fresh process that loads the same MiniLM query encoder; RSS is read from
``/proc/self/status`` after opening and after one BM25 query (today's side). No Qdrant server
runs on these machines, so the URL is never contacted: this measures the process-local state,
which is what grows with the corpus on every replica. Documents are ~100 synthetic words.

    python bench/bench_qdrant_rss.py --docs 200000
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
URL = "http://127.0.0.1:9"  # nothing listens: the retrievers never call it here


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    return float("nan")


def corpus(n: int, words: int = 100, seed: int = 0):  # noqa: ANN201
    import numpy as np

    rng = np.random.default_rng(seed)
    p = 1.0 / np.arange(1, 50_001)
    vocab = np.array([f"t{i}q" for i in range(50_000)])
    for s in range(0, n, 10_000):
        m = min(10_000, n - s)
        w = vocab[rng.choice(50_000, size=(m, words), p=p / p.sum())]
        for j in range(m):
            yield {"id": f"d{s + j}", "title": f"doc {s + j}", "text": " ".join(w[j])}


def build_today(folder: Path, n: int) -> None:
    from rag.core.types import as_documents
    from rag.index.persist import save_retriever
    from retrievers import BM25Retriever, DenseRetriever, HybridRetriever
    from retrievers.stores import QdrantStore

    docs = as_documents(list(corpus(n)))
    bm25 = BM25Retriever().index(docs)
    dense = DenseRetriever(store=QdrantStore(url=URL, collection="docs"))
    dense._docs = {d.id: d for d in docs}  # its vectors would be in the server
    hyb = HybridRetriever([bm25, dense])
    hyb._docs = dict(dense._docs)
    save_retriever(hyb, folder)


def serve(side: str, folder: Path) -> dict:
    import torch

    torch.set_num_threads(1)
    from rag.core.encoders import TransformerEncoder

    TransformerEncoder().load()  # the query encoder both sides load
    base = rss_mb()
    t = time.perf_counter()
    if side == "today":
        from rag.index.persist import load_retriever

        r = load_retriever(folder)
        opened = rss_mb()
        r.retrievers[0].retrieve("t1q t7q t42q", k=10)  # BM25 is served in-process
        held = len(r.documents) + sum(len(c.documents) for c in r.retrievers)
    else:
        from retrievers import QdrantHybridRetriever

        r = QdrantHybridRetriever(url=URL, collection="docs").load()
        opened = rss_mb()
        held = len(r.documents)
    return {
        "rss_mb_encoder_only": base,
        "rss_mb_opened": opened,
        "rss_mb_serving": rss_mb(),
        "corpus_state_mb": round(rss_mb() - base, 1),
        "open_s": round(time.perf_counter() - t, 1),
        "documents_held_in_process": held,
    }


def rss_compare(n: int) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    out: dict = {"docs": n}
    with tempfile.TemporaryDirectory() as d:
        t = time.perf_counter()
        subprocess.run(
            [sys.executable, __file__, "--child", "build", "--docs", str(n), "--folder", d],
            env=env,
            check=True,
        )
        out["build_today_s"] = round(time.perf_counter() - t, 1)
        out["today_index_bytes_on_disk_mb"] = round(
            sum(f.stat().st_size for f in Path(d).rglob("*") if f.is_file()) / 2**20, 1
        )
        for side in ("today", "new"):
            res = subprocess.run(
                [sys.executable, __file__, "--child", side, "--folder", d],
                env=env,
                check=True,
                capture_output=True,
                text=True,
            )
            out[side] = json.loads(res.stdout.strip().splitlines()[-1])
    out["corpus_state_ratio_new_over_today"] = round(
        out["new"]["corpus_state_mb"] / max(out["today"]["corpus_state_mb"], 1e-9), 4
    )
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--docs", type=int, default=200_000)
    ap.add_argument("--child", default=None)
    ap.add_argument("--folder", default=None)
    a = ap.parse_args()
    sys.path.insert(0, str(ROOT))
    if a.child == "build":
        build_today(Path(a.folder), a.docs)
    elif a.child:
        print(json.dumps(serve(a.child, Path(a.folder))))
    else:
        print(json.dumps(rss_compare(a.docs), indent=2))


if __name__ == "__main__":
    main()
