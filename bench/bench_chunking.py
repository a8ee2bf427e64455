"""Chunking on scifact-reports: whole reports (today: the encoder truncates at 256 tokens) vs
chunks vs chunks with contextual headers, for BM25, dense (MiniLM) and hybrid; JSON on stdout.

    python bench/bench_chunking.py                      # 150-report subset, all retrievers
    python bench/bench_chunking.py --reports 648 --no-dense   # BM25 on all reports

Measures, on the test claims whose relevant reports are all in the (sub)collection:

* ``ndcg@10``: report-level nDCG@10; chunk rankings (top 100 chunks) are grouped into reports by
  the best chunk (``rag.pipeline.parents.group_by_parent``, ``max``; ``sum`` and ``rrf`` also
  reported for chunked hybrid);
* ``section_hit@5``: share of claims for which a top-5 hit *shows* the evidence section: a chunk
  inside the relevant section, or, for whole reports, the relevant report with the section
  starting inside the first 1,000 characters (``Pipeline.max_source_chars``, what today's
  generator is shown);
* throughput of loading (files/s) and chunking (chunks/s).

Dense vectors are memoised by text in the ``ingest`` bench cache
(``bench/locations.py``), so a rerun only encodes what changed; timings of dense indexing are
therefore not reported here (``--incremental`` measures re-indexing separately).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from locations import DATA as DATASETS
from locations import cache

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from evals.measures import score_run  # noqa: E402
from rag.core.types import Document, Query  # noqa: E402
from rag.ingest import Chunker, load_paths  # noqa: E402
from rag.ingest.splitter import sections  # noqa: E402
from rag.pipeline.parents import group_by_parent  # noqa: E402

_HERE = Path(__file__).resolve()
DATA = DATASETS / "scifact-reports"
CACHE = cache("ingest")
SHOWN_CHARS = 1000


class CachedEncoder:
    """MiniLM vectors memoised by (kind, text) in one .npy + keys file, flushed atomically after
    every call: the figures equal uncached ones, only time is saved."""

    def __init__(self, name: str) -> None:
        import torch

        torch.set_num_threads(1)
        from rag.core.encoders import TransformerEncoder

        self.enc = TransformerEncoder()
        self.max_length = self.enc.max_length
        self.model = self.enc.model
        self.path = CACHE / f"minilm-{name}"
        self.cache: dict[str, np.ndarray] = {}
        if self.path.with_suffix(".npy").exists():
            keys = json.loads(self.path.with_suffix(".keys.json").read_text())
            vecs = np.load(self.path.with_suffix(".npy"))
            self.cache = dict(zip(keys, vecs))
        self.encoded = 0

    def load(self) -> CachedEncoder:
        return self

    @staticmethod
    def _key(kind: str, text: str) -> str:
        return hashlib.sha1(f"{kind}\0{text}".encode()).hexdigest()

    def _flush(self) -> None:
        CACHE.mkdir(parents=True, exist_ok=True)
        keys = list(self.cache)
        for suffix, write in (
            (".npy", lambda f: np.save(f, np.stack([self.cache[k] for k in keys]))),
            (".keys.json", lambda f: f.write(json.dumps(keys).encode())),
        ):
            tmp = self.path.with_suffix(suffix + f".tmp{os.getpid()}")
            with open(tmp, "wb") as f:
                write(f)
            os.replace(tmp, self.path.with_suffix(suffix))

    def encode(self, texts: list[str], kind: str = "document") -> np.ndarray:
        keys = [self._key(kind, t) for t in texts]
        todo = {k: t for k, t in zip(keys, texts) if k not in self.cache}
        if todo:
            vecs = self.enc.encode(list(todo.values()), kind=kind)
            self.cache.update(zip(todo, vecs))
            self.encoded += len(todo)
            self._flush()
            print(
                f"encoded {self.encoded} new texts ({len(self.cache)} cached)",
                file=sys.stderr,
                flush=True,
            )
        if not texts:
            return np.zeros((0, 384), dtype=np.float32)
        return np.stack([self.cache[k] for k in keys])

    def encode_queries(self, texts: list[str]) -> np.ndarray:
        return self.encode(list(texts), "query")

    def encode_documents(self, texts: list[str]) -> np.ndarray:
        return self.encode(list(texts), "document")


def read_qrels(name: str) -> list[list[str]]:
    lines = (DATA / "qrels" / name).read_text().splitlines()[1:]
    return [ln.split("\t") for ln in lines if ln.strip()]


def subset(n: int, seed: int = 13) -> list[str]:
    """``n`` report ids: the relevant reports of test claims (in query order) first, then the
    other reports in a seeded shuffle; all reports when ``n >= 648``."""
    all_ids = sorted(p.name for p in (DATA / "docs").glob("report-*.md"))
    if n >= len(all_ids):
        return all_ids
    rel = list(dict.fromkeys(r[1] for r in read_qrels("test.tsv")))
    rng = random.Random(seed)
    rest = [r for r in all_ids if r not in set(rel)]
    rng.shuffle(rest)
    picked = (rel[: n // 2] + rest)[:n]
    return sorted(picked)


def retrievers(kind: str, enc: CachedEncoder | None, fusion_depth: int | None = None):
    """``fusion_depth``: candidates per child of the hybrid (``None``: its default, 500 since
    issue #30; the figures in docs/ingestion.md before that were at 100)."""
    from retrievers import BM25Retriever, DenseRetriever, HybridRetriever

    if kind == "bm25":
        return BM25Retriever()
    dense = DenseRetriever(encoder=enc)
    return (
        dense
        if kind == "dense"
        else HybridRetriever([BM25Retriever(), DenseRetriever(encoder=enc)], depth=fusion_depth)
    )


def section_index(doc: Document) -> dict[str, int]:
    """Section heading -> 0-based index among the report's ``##`` sections."""
    out: dict[str, int] = {}
    for _, _, path in sections(doc.text):
        if len(path) >= 2:
            out.setdefault(path[-1], len(out))
    return out


def evaluate(rankings, qrels, sect, reports, chunked: bool) -> dict:
    out: dict[str, float] = {}
    for how in ("max", "sum", "rrf") if chunked else ("max",):
        docs = [group_by_parent(r, how, k=10) if chunked else r.top(10) for r in rankings]
        run = {r.query.id: {h.id: h.score for h in r.hits} for r in docs if r.hits}
        judged = {r.query.id: qrels[r.query.id] for r in rankings}
        key = "ndcg@10" if how == "max" else f"ndcg@10_{how}"
        out[key] = round(score_run(run, judged, ["nDCG@10"], missing="zero").mean["nDCG@10"], 4)
    hits = 0
    for r in rankings:
        want = sect[r.query.id]  # {(report, section_no)}
        for h in r.hits[:5]:
            d = h.document
            if chunked:
                parent = d.metadata["parent_id"]
                heads = d.metadata["headings"]
                no = reports[parent][1].get(heads[-1], -1) if len(heads) >= 2 else -1
                if (parent, no) in want:
                    hits += 1
                    break
            elif any(rep == d.id and reports[d.id][2][no] < SHOWN_CHARS for rep, no in want):
                hits += 1
                break
    out["section_hit@5"] = round(hits / len(rankings), 4)
    return out


def incremental(n: int, kind: str) -> dict:
    """Full ``index_paths`` of ``n`` reports (copied to a temp folder), then a rerun with nothing
    changed, then one after appending a sentence to 1% of the files (at least one)."""
    import shutil

    import torch

    from rag.app.cli import build_retriever
    from rag.ingest.indexing import index_paths
    from rag.pipeline import Pipeline

    torch.set_num_threads(1)
    tmp = Path(tempfile.mkdtemp(prefix="bench-incremental-"))
    folder, out = tmp / "docs", tmp / "idx"
    folder.mkdir()
    ids = subset(n)
    for i in ids:
        shutil.copy(DATA / "docs" / i, folder / i)

    def run() -> tuple[float, object]:
        t0 = time.perf_counter()
        rep = index_paths(
            [folder], out, lambda: Pipeline(retriever=build_retriever(kind, progress=False))
        )
        return time.perf_counter() - t0, rep

    full_s, full = run()
    noop_s, _ = run()
    touched = ids[:: max(1, len(ids) // max(1, len(ids) // 100))][: max(1, len(ids) // 100)]
    for i in touched:
        with open(folder / i, "a", encoding="utf-8") as f:
            f.write("\nThis report was updated.\n")
    re_s, re = run()
    resumed = resume_after_kill(folder, tmp / "killed", kind, full.chunks_added)  # type: ignore[attr-defined]
    shutil.rmtree(tmp)
    return {
        "mode": "incremental",
        "retriever": kind,
        "reports": len(ids),
        "full_s": round(full_s, 2),
        "full_files_per_s": round(len(ids) / full_s, 2),
        "full_chunks_per_s": round(full.chunks_added / full_s, 2),  # type: ignore[attr-defined]
        "chunks": full.chunks_added,  # type: ignore[attr-defined]
        "unchanged_rerun_s": round(noop_s, 2),
        "touched_files": len(touched),
        "reindex_s": round(re_s, 2),
        "reindex_chunks": re.chunks_added,  # type: ignore[attr-defined]
        "full_over_reindex": round(full_s / re_s, 2),
        **resumed,
    }


def resume_after_kill(folder: Path, out: Path, kind: str, chunks: int) -> dict:
    """``rag index`` in a subprocess, SIGKILLed in the commit after half of its batches, then
    rerun (in-process, like the full run): how many chunks it still embeds and how long it
    takes."""
    import math
    import subprocess

    from rag.ingest.indexing import DEFAULT_BATCH

    batches = math.ceil(chunks / DEFAULT_BATCH)
    kill_at = 1 + max(1, batches // 2) + 1  # generation 1, half the batches, then the next
    cmd = [sys.executable, "-m", "rag.app.cli", "index", str(folder), "--out", str(out)]
    cmd += ["--retriever", kind]
    env = {**os.environ, "PYTHONPATH": str(_HERE.parents[1])}
    killed = subprocess.run(
        cmd, env={**env, "RAG_CRASH_AT": f"after-state:{kill_at}"}, capture_output=True
    )
    from rag.app.cli import build_retriever
    from rag.ingest.indexing import index_paths
    from rag.pipeline import Pipeline

    t0 = time.perf_counter()  # the rerun in-process, as the full run was timed
    rep = index_paths([folder], out, lambda: Pipeline(retriever=build_retriever(kind)))
    return {
        "killed_rc": killed.returncode,
        "resume_rerun_s": round(time.perf_counter() - t0, 2),
        "resume_rerun_chunks": rep.chunks_added,
        "resume_rerun_report": rep.lines()[0],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--reports", type=int, default=150)
    ap.add_argument("--no-dense", action="store_true")
    ap.add_argument("--depth", type=int, default=100, help="chunks retrieved before grouping")
    ap.add_argument("--fusion-depth", type=int, default=None,
                    help="the hybrid's candidates per child (default: the hybrid's, 500)")
    ap.add_argument(
        "--variants", default="whole,chunked,chunked+context", help="comma-separated variants"
    )
    ap.add_argument(
        "--incremental", default=None, metavar="KIND", help="time re-indexing with bm25|hybrid"
    )
    args = ap.parse_args()
    if args.incremental:
        print(json.dumps(incremental(args.reports, args.incremental), indent=2))
        return
    ids = subset(args.reports)
    tmp = Path(tempfile.mkdtemp(prefix="bench-chunking-"))
    for i in ids:  # a folder holding just the subset, as a user would index it
        (tmp / i).symlink_to(DATA / "docs" / i)
    t0 = time.perf_counter()
    loaded = load_paths([tmp])
    t_load = time.perf_counter() - t0
    docs = [d.model_copy(update={"metadata": {}}) for d in loaded.documents]
    reports = {}
    for d in docs:
        idx = section_index(d)
        starts = [s for s, _, p in sections(d.text) if len(p) >= 2]
        reports[d.id] = (d, idx, starts)
    qrels: dict[str, dict[str, int]] = {}
    for q, c, _ in read_qrels("test.tsv"):
        qrels.setdefault(q, {})[c] = 1
    sect: dict[str, set] = {}
    for q, c, s, _ in read_qrels("sections-test.tsv"):
        sect.setdefault(q, set()).add((c, int(s)))
    keep = {q for q, rel in qrels.items() if all(c in reports for c in rel)}
    queries = [
        Query(id=r["_id"], text=r["text"])
        for r in map(json.loads, (DATA / "queries.jsonl").read_text().splitlines())
        if r["_id"] in keep
    ]
    variants: dict[str, list[Document]] = {"whole": docs}
    timing = {}
    for name, ctx in (("chunked", False), ("chunked+context", True)):
        ch = Chunker(contextual=ctx).load()
        t0 = time.perf_counter()
        variants[name] = ch.split(docs)
        timing[name] = time.perf_counter() - t0
    result: dict = {
        "dataset": "scifact-reports",
        "reports": len(docs),
        "queries": len(queries),
        "fusion_depth": args.fusion_depth or "hybrid default",
        "subset": "all"
        if len(docs) >= 648
        else ("relevant reports of the first test claims (half) + seeded random others"),
        "load_files_per_s": round(len(docs) / t_load, 1),
        "chunks": {k: len(v) for k, v in variants.items()},
        "chunk_per_s": {k: round(len(variants[k]) / t, 1) for k, t in timing.items()},
        "results": [],
    }
    kinds = ["bm25"] if args.no_dense else ["bm25", "dense", "hybrid"]
    enc = None if args.no_dense else CachedEncoder("scifact-reports")
    wanted = args.variants.split(",")
    for kind in kinds:
        for name, vdocs in ((n, v) for n, v in variants.items() if n in wanted):
            r = retrievers(kind, enc, args.fusion_depth)
            r.index(vdocs)
            depth = args.depth if name != "whole" else 10
            rankings = r.retrieve_batch(queries, k=depth)
            row = {
                "retriever": kind,
                "docs": name,
                **evaluate(rankings, qrels, sect, reports, name != "whole"),
            }
            print(json.dumps(row), file=sys.stderr, flush=True)
            result["results"].append(row)
    base = {r["retriever"]: r["ndcg@10"] for r in result["results"] if r["docs"] == "whole"}
    for r in result["results"] if base else []:
        r["ndcg_ratio_vs_whole"] = (
            round(r["ndcg@10"] / base[r["retriever"]], 3) if base[r["retriever"]] else None
        )
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
