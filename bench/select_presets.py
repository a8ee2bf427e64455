"""Re-select the retrieval presets leave-one-collection-out, scifact-reports included; JSON out.

    python bench/select_presets.py                      # all six sets, every candidate
    python bench/select_presets.py --datasets adi,med --systems rrf,bm25,quality

Every candidate is an eval config (:mod:`evals.systems`), indexed and evaluated through the code
``rag eval`` runs (``prepare`` + ``evaluate``, k = 100): BEIR collections whole (one document per
abstract, ``title + " " + text``), the folder corpus scifact-reports chunked once as ``rag index``
chunks files (no contextual headers, the configuration whose BM25 reproduces 0.6759; the chunks
are indexed in memory, :func:`chunked_once`) and scored
per report by its best chunk (the ``parents`` node, which asks its child for 1,000 chunks, so
every fusion there runs at depth 1,000 whatever its config says). Candidates: the presets and
their ingredients (BM25, MiniLM, RRF at depths 100/500/1000, CombSUM, RM3, Rocchio PRF, fusions
of the four) plus RRF with per-query weights from each list's score distribution (computed from
the BM25 and MiniLM runs of depth 100; ``bench_fusion_depth.py`` has the depth-1000 version).

Then, for each held-out collection, the candidate with the best macro mean nDCG@10 on the other
five is chosen and compared on the held-out queries with the baseline RRF(BM25, MiniLM) at depth
1000 (:func:`evals.selection.leave_one_out`: paired randomisation test, Holm over the folds).
Per collection, every candidate is also compared with the baseline (Holm over that collection's
candidates).

Document vectors go through the embedding cache (``--embed-cache``, default
``$RAGNODES_EMBED_CACHE`` or ``~/.cache/ragnodes/embeddings``): each corpus is encoded once.
Query vectors are memoised by text across candidates (every candidate uses the default MiniLM
fp32 encoder config, so the figures are those of encoding each time; latency is not reported
here, ``bench_quality.py --costs`` and ``bench_fusion_depth.py --latency`` time the nodes).
Each (collection, candidate) result is kept in the bench cache ``select/`` (per-query values and
the two base runs), so an interrupted run resumes; ``--fresh`` ignores it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

from locations import DATA, cache

for _v in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_v, "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

MEASURES = ["nDCG@10", "R@100"]
BASELINE = "rrf"
DATASETS = "adi,cisi,med,cranfield,scifact,scifact-reports"
BM25 = {"type": "bm25"}
DENSE = {"type": "dense"}
RM3 = {"type": "bm25_rm3", "fb_docs": 10, "fb_terms": 10, "original_query_weight": 0.7}
PRF = {"type": "dense_prf", "fb_docs": 3, "beta": 0.5}


def _hybrid(depth: int, method: str = "rrf") -> dict:
    return {"type": "hybrid", "retrievers": [BM25, DENSE], "method": method, "depth": depth}


def _fusion(children: list[dict], method: str) -> dict:
    return {
        "type": "rerank_fusion",
        "retrievers": children,
        "rerankers": [],
        "method": method,
        "depth": 1000,
    }


# name -> eval config (the baseline first: ties in the selection go to it)
CANDIDATES: dict[str, dict] = {
    BASELINE: _hybrid(1000),
    "bm25": BM25,
    "dense": DENSE,
    "rrf_d100": _hybrid(100),
    "rrf_d500": _hybrid(500),
    "combsum": _hybrid(1000, "score"),
    "bm25_rm3": RM3,
    "dense_prf": PRF,
    "rrf_rm3_prf": _fusion([RM3, PRF], "rrf"),
    "quality": _fusion([RM3, PRF], "score"),  # the former preset; now "combsum" (docs/quality.md)
    "rrf_all4": _fusion([BM25, RM3, DENSE, PRF], "rrf"),
    "combsum_all4": _fusion([BM25, RM3, DENSE, PRF], "score"),
}
# computed from the bm25 and dense document-level runs (depth 100): per-query weights, and RRF
# after grouping (on scifact-reports: each report's best BM25 chunk and best MiniLM chunk fused,
# passage-level evidence per retriever, instead of fusing chunks and then grouping; on whole
# documents it is RRF at depth 100)
DERIVED = ("rrf_zweights", "rrf_grouped")


def machine() -> dict:
    from rag.core.runtime import cpu_flags

    model = ""
    if Path("/proc/cpuinfo").exists():
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "cpu": model or platform.processor(),
        "cpus": os.cpu_count(),
        "flags": sorted(cpu_flags() & {"avx2", "fma", "avx512f", "avx512_bf16", "amx_tile"}),
        "threads": 1,
        "load_average_start": [round(x, 2) for x in os.getloadavg()],
    }


def memoise_query_vectors() -> None:
    """Encode each distinct query text once per process (see the module docstring)."""
    from rag.core.encoders import TransformerEncoder

    original = TransformerEncoder.encode
    memo: dict[tuple[str, str], np.ndarray] = {}

    def encode(self, texts, kind="document", progress=False):  # type: ignore[no-untyped-def]
        if kind != "query":
            return original(self, texts, kind, progress)
        key = json.dumps(self.cache_key(), sort_keys=True)
        todo = list(dict.fromkeys(t for t in texts if (key, t) not in memo))
        if todo:
            memo.update(zip(((key, t) for t in todo), original(self, todo, kind, progress)))
        if not texts:
            return original(self, texts, kind, progress)
        return np.stack([memo[(key, t)] for t in texts])

    TransformerEncoder.encode = encode  # type: ignore[method-assign]


def run_candidate(name: str, cfg: dict, ds, workdir: Path) -> dict:  # type: ignore[no-untyped-def]
    """Index ``ds`` for one candidate as ``rag eval`` does and score it (k = 100)."""
    import rag.ingest  # noqa: F401, E402  (registers every node type)
    from evals.harness import evaluate
    from evals.systems import EvalSystem, prepare
    from rag.core.nodes import Node
    system = EvalSystem(name=name, node=Node.from_config(dict(cfg)), source="select_presets")
    runnable, index_s = prepare(system, ds, workdir, progress=False)
    res = evaluate(runnable, ds, MEASURES, k=100, progress=False, name=name, index_s=index_s)
    close = getattr(runnable, "close", None)
    if callable(close):
        close()
    out = {
        "mean": {m: round(v, 4) for m, v in res.aggregate.items()},
        "per_query": res.per_query,
        "index_s": round(index_s, 1),
    }
    if name in ("bm25", "dense"):
        out["run"] = res.runs[res.final_stage]
    return out


def z_weights(lists: list[list[float]], eps: float = 1e-3) -> list[float]:
    """Per-query list weights ``max(z, 0) + eps`` of the top score's z-score in its list,
    normalised to sum to the number of lists (``bench_fusion_depth.z_weights``)."""
    zs = []
    for s in lists:
        a = np.asarray(s, dtype=np.float64)
        z = 0.0 if len(a) < 2 or a.std() == 0 else (a[0] - a.mean()) / a.std()
        zs.append(max(z, 0.0) + eps)
    return [len(zs) * z / sum(zs) for z in zs]


def fused_run(lex: dict, dense: dict, per_query_weights: bool) -> dict[str, dict[str, float]]:
    """RRF (k = 60) of the two document-level runs of depth 100: equal weights, or weights per
    query from each list's scores (:func:`z_weights`)."""
    run = {}
    for q in set(lex) | set(dense):
        lists = [sorted(r.get(q, {}).items(), key=lambda x: (-x[1], x[0])) for r in (lex, dense)]
        w = z_weights([[s for _, s in lst] for lst in lists]) if per_query_weights else [1.0, 1.0]
        fused: dict[str, float] = {}
        for lst, wi in zip(lists, w):
            for rank, (doc, _) in enumerate(lst, 1):
                fused[doc] = fused.get(doc, 0.0) + wi / (60 + rank)
        run[q] = fused
    return run


def chunked_once(ds):  # type: ignore[no-untyped-def]
    """A folder corpus as its chunks (``rag index``'s loader and the chunker without contextual
    headers: the ids, texts and ``parent_id`` ``index_paths`` writes, as
    ``tests/evals/test_evals_corpora.py`` checks), so each candidate indexes them in memory instead
    of re-chunking the files into an index folder; ``prepare`` then groups hits by parent."""
    import dataclasses

    from rag.ingest import Chunker

    if ds.files is None:
        return ds
    return dataclasses.replace(ds, corpus=Chunker(contextual=False).split(ds.corpus), files=None)


def collection(name: str, systems: list[str], fresh: bool) -> dict[str, dict]:
    from evals.datasets import load_dataset
    from evals.measures import score_run

    folder = cache("select") / name
    ds = chunked_once(load_dataset(DATA / name))
    out: dict[str, dict] = {}
    for s in systems:
        path = folder / f"{s}.json"
        if path.exists() and not fresh:
            out[s] = json.loads(path.read_text())
            continue
        t0 = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix="select-") as tmp:
            out[s] = run_candidate(s, CANDIDATES[s], ds, Path(tmp))
        out[s]["seconds"] = round(time.perf_counter() - t0, 1)
        folder.mkdir(parents=True, exist_ok=True)
        tmp_path = path.with_suffix(f".tmp{os.getpid()}")
        tmp_path.write_text(json.dumps(out[s]))
        os.replace(tmp_path, path)
        print(f"{name} {s}: {out[s]['mean']} ({out[s]['seconds']} s)", file=sys.stderr, flush=True)
    if "bm25" in out and "dense" in out:
        judged = set(out[BASELINE]["per_query"]["nDCG@10"]) if BASELINE in out else set(ds.qrels)
        for derived, weighted in zip(DERIVED, (True, False)):
            run = fused_run(out["bm25"]["run"], out["dense"]["run"], weighted)
            scores = score_run(run, ds.qrels, MEASURES, missing="zero")
            per_query = {
                m: {q: v for q, v in scores.per_query[m].items() if q in judged} for m in MEASURES
            }
            means = {m: round(float(np.mean(list(per_query[m].values()))), 4) for m in MEASURES}
            out[derived] = {"mean": means, "per_query": per_query}
    return out


def versus_baseline(results: dict[str, dict]) -> dict[str, dict]:
    """Each candidate against the baseline on one collection: delta and Holm-corrected p."""
    from evals import compare_systems

    out: dict[str, dict] = {}
    for m in MEASURES:
        per_query = {s: {m: r["per_query"][m]} for s, r in results.items()}
        for c in compare_systems(per_query, BASELINE, correction="holm"):
            if c.system != BASELINE:
                out.setdefault(c.system, {})[m] = {
                    "delta": round(c.delta, 4),
                    "p_holm": round(c.p_adjusted, 4),
                }
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--datasets", default=DATASETS)
    ap.add_argument("--systems", default=",".join(CANDIDATES), help="candidates (baseline: rrf)")
    ap.add_argument(
        "--embed-cache",
        default=os.environ.get("RAGNODES_EMBED_CACHE")
        or str(Path.home() / ".cache" / "ragnodes" / "embeddings"),
    )
    ap.add_argument("--fresh", action="store_true", help="ignore the kept per-candidate results")
    args = ap.parse_args()
    import torch

    from evals.selection import leave_one_out
    from rag.core import embed_cache

    torch.set_num_threads(1)
    embed_cache.set_default(args.embed_cache)
    memoise_query_vectors()
    systems = [s for s in args.systems.split(",") if s]
    unknown = [s for s in systems if s not in CANDIDATES]
    if unknown or BASELINE not in systems:
        ap.error(f"unknown systems {unknown} (known: {list(CANDIDATES)}; {BASELINE} is required)")
    t0 = time.perf_counter()
    info = machine()
    results = {n: collection(n, systems, args.fresh) for n in args.datasets.split(",") if n}
    names = [*systems, *(d for d in DERIVED if all(d in r for r in results.values()))]
    ndcg = {c: {s: r[s]["per_query"]["nDCG@10"] for s in names} for c, r in results.items()}
    selection = leave_one_out(ndcg, BASELINE, names) if len(ndcg) > 1 else None
    info["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    out = {
        "machine": info,
        "command": "python bench/select_presets.py " + " ".join(sys.argv[1:]),
        "baseline": "RRF(BM25, MiniLM fp32), k = 60, depth 1000",
        "candidates": {s: CANDIDATES.get(s, "derived") for s in names},
        "collections": {
            c: {
                "queries": len(ndcg[c][BASELINE]),
                "mean": {s: r[s]["mean"] for s in names},
                "vs_baseline": versus_baseline({s: r[s] for s in names}),
            }
            for c, r in results.items()
        },
        "selection": selection.model_dump() if selection else None,  # needs two collections
        "seconds": round(time.perf_counter() - t0, 1),
    }
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
