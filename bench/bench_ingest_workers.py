"""``rag index --workers N`` against one worker, side by side: the first ``--files`` reports of
scifact-reports (648 in all) indexed hybrid (BM25 + MiniLM), each run into a fresh folder with no
embedding cache, the runs alternated so that a shared machine's load drifts over both alike.

    OMP_NUM_THREADS=1 python bench/bench_ingest_workers.py --files 648 --workers 2 --rounds 1

Prints JSON: seconds per run, chunks, the speed-up (1 worker / N workers), the CPU count and the
load average before and after (a speed-up needs idle cores: on a loaded machine it shrinks).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from locations import DATA

ROOT = Path(__file__).resolve().parents[1]


def run(folder: Path, out: Path, workers: int) -> tuple[float, str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1",
           "TOKENIZERS_PARALLELISM": "false"}
    env.pop("RAGNODES_EMBED_CACHE", None)
    t0 = time.perf_counter()
    p = subprocess.run(
        [sys.executable, "-m", "rag.app.cli", "index", str(folder), "--out", str(out),
         "--retriever", "hybrid", "--workers", str(workers)],
        env=env, capture_output=True, text=True, check=True,
    )
    return time.perf_counter() - t0, p.stdout.strip().splitlines()[0]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--files", type=int, default=648)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=1)
    args = ap.parse_args()
    src = sorted((DATA / "scifact-reports" / "docs").glob("*.md"))[: args.files]
    work = Path(tempfile.mkdtemp(prefix="bench-workers-"))
    try:
        folder = work / "docs"
        folder.mkdir()
        for f in src:
            shutil.copy(f, folder / f.name)
        out: dict = {"files": len(src), "bytes": sum(f.stat().st_size for f in src),
                     "machine": {"cpus": os.cpu_count(), "load_avg_1m": os.getloadavg()[0]},
                     "note": "shared machine: compare the ratio, measured side by side"}
        times: dict[int, list[float]] = {1: [], args.workers: []}
        for r in range(args.rounds):
            for w in ([1, args.workers] if r % 2 == 0 else [args.workers, 1]):
                s, line = run(folder, work / f"idx-{w}-{r}", w)
                times[w].append(s)
                out[f"report_workers_{w}"] = line
                print(json.dumps({"workers": w, "seconds": round(s, 1)}), file=sys.stderr)
        out["seconds"] = {str(w): [round(x, 1) for x in v] for w, v in times.items()}
        out["speedup"] = round(min(times[1]) / min(times[args.workers]), 2)
        out["machine"]["load_avg_1m_end"] = os.getloadavg()[0]
        print(json.dumps(out, indent=1))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
