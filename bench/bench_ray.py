"""Throughput of ``rag index --engine ray`` on a local 2-node Ray cluster (1 CPU each) against
single-process ``rag index`` (1 and 2 torch threads), side by side in one run, and Ray Data's
overhead per batch.

Every run happens inside the namespaced cluster of tests/ray_cluster.py (loopback only), one
after the other, on the same files (the first ``--files`` scifact-reports, else generated
Markdown): hybrid BM25 + MiniLM fp32, ``--batch-size 2000``. Chunks/s is from the report's
own seconds (model loads and cluster connection included, Python start-up not);
``cpu_ms_per_chunk`` is the CPU time of every process in the namespace during the run (the
driver, the actors, Ray's own daemons) per chunk, which a loaded machine inflates far less than
wall time. The overhead
per batch is a Ray Data pipeline of the same shape (from_items -> task map -> actor pool map ->
iter_batches in order) whose stages do nothing, divided by its batches.

    python bench/bench_ray.py --files 16 > docs/ray_bench.json
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))


def _identity(batch: dict) -> dict:
    return batch


class _Identity:
    def __call__(self, batch: dict) -> dict:
        return batch


def overhead(address: str, batches: int, batch_size: int) -> dict:
    """Seconds per batch of a do-nothing pipeline of the engine's shape (run in the cluster)."""
    import ray

    ray.init(address=address, log_to_driver=False, logging_level="WARNING")
    ctx = ray.data.DataContext.get_current()
    ctx.execution_options.preserve_order = True
    ctx.enable_progress_bars = False
    rows = [{"doc": "x" * 1500, "v": i} for i in range(batches * batch_size)]
    out = {}
    for workers in (1, 2):
        t0 = time.perf_counter()
        ds = ray.data.from_items(rows, override_num_blocks=batches)
        ds = ds.map_batches(_identity, batch_size=batch_size, num_cpus=0.25)
        ds = ds.map_batches(
            _Identity,
            batch_size=batch_size,
            compute=ray.data.ActorPoolStrategy(size=workers),
            num_cpus=0.75,
        )
        n = sum(1 for _ in ds.iter_batches(batch_size=None))
        total = time.perf_counter() - t0
        out[f"workers_{workers}"] = {
            "batches": batches,
            "blocks_seen": n,
            "seconds": round(total, 2),
            "ms_per_batch": round(1000 * total / batches, 1),
        }
    ray.shutdown()
    return out


def _corpus(tmp: Path, files: int) -> Path:
    src = tmp / "corpus"
    src.mkdir()
    reports = ROOT.parent / "shared" / "datasets" / "scifact-reports" / "docs"
    if reports.is_dir():
        for f in sorted(reports.glob("*.md"))[:files]:
            (src / f.name).write_bytes(f.read_bytes())
        return src
    for i in range(files):  # ~16 chunks per file, like a report
        sections = [
            " ".join(f"word{(i * 31 + j * 7 + t) % 997}" for t in range(180)) for j in range(8)
        ]
        body = "\n\n".join(f"## Section {j}\n\n{text}" for j, text in enumerate(sections))
        (src / f"doc{i:03d}.md").write_text(f"# Doc {i}\n\n{body}\n")
    return src


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--files", type=int, default=16)
    ap.add_argument("--overhead", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--address", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.overhead:  # the step run inside the cluster
        print(json.dumps(overhead(args.address, batches=40, batch_size=64)))
        return
    from ray_cluster import PORT, run_in_cluster, unshare_reason

    reason = unshare_reason()
    if reason:
        sys.exit(f"cannot run: {reason}")
    tmp = Path(tempfile.mkdtemp(prefix="bench-ray-"))
    src = _corpus(tmp, args.files)
    rag = [sys.executable, "-m", "rag.app.cli", "index", str(src), "--batch-size", "2000"]
    ray_args = ["--engine", "ray", "--ray-address", f"127.0.0.1:{PORT}"]
    runs = {
        "local_1_thread": ([*rag, "--out", str(tmp / "l1")], {"OMP_NUM_THREADS": "1"}),
        "local_2_threads": ([*rag, "--out", str(tmp / "l2")], {"OMP_NUM_THREADS": "2"}),
        "ray_1_worker": ([*rag, "--out", str(tmp / "r1"), *ray_args, "--ray-workers", "1"], {}),
        "ray_2_workers": ([*rag, "--out", str(tmp / "r2"), *ray_args, "--ray-workers", "2"], {}),
        # no embedding: load + chunk + BM25 + commits, an upper bound of the writer's share
        "local_bm25_only": ([*rag, "--out", str(tmp / "b"), "--retriever", "bm25"], {}),
    }
    steps = [{"argv": argv, "env": env} for argv, env in runs.values()]
    over = [sys.executable, __file__, "--overhead", "--address", f"127.0.0.1:{PORT}"]
    steps.append({"argv": over})
    load_before = os.getloadavg()
    res = run_in_cluster(steps, timeout=3600)
    out: dict = {
        "machine": "2-core AMD EPYC (AVX2), 24 GiB, SHARED with other jobs: compare ratios "
        "within this run, not absolute times; no GPU",
        "load_average_before_after": [round(load_before[0], 1), round(os.getloadavg()[0], 1)],
        "cluster": "ray 2.60, head + 1 worker node, 1 CPU and 80 MiB object store each, "
        "inside unshare -n -p (loopback only)",
        "cluster_start_s": round(res["cluster_start_s"], 1),
        "files": args.files,
        "retriever": "hybrid (BM25 + MiniLM fp32)",
    }
    for (name, _), step in zip(runs.items(), res["steps"]):
        m = re.search(r"(\d+) chunks added, \d+ removed \(([\d.]+)s\)", step["stdout"])
        if step["rc"] != 0 or m is None:
            out[name] = {"error": step["stderr"][-500:]}
            continue
        chunks, seconds = int(m.group(1)), float(m.group(2))
        out[name] = {
            "chunks": chunks,
            "seconds": seconds,
            "chunks_per_s": round(chunks / seconds, 2),
            "ms_per_chunk": round(1000 * seconds / chunks, 1),
            "process_wall_s": round(step["seconds"], 1),
            # CPU of every process in the namespace (driver, actors, raylets, GCS): the cost
            # that does not depend on how loaded the shared machine was
            "cluster_cpu_s": round(step.get("cpu_s", float("nan")), 1),
            "cpu_ms_per_chunk": round(1000 * step.get("cpu_s", float("nan")) / chunks, 1),
        }
    base = out["local_1_thread"].get("chunks_per_s")
    for name in runs:
        if base and "chunks_per_s" in out[name]:
            out[name]["speedup_vs_local_1_thread"] = round(out[name]["chunks_per_s"] / base, 2)
    try:
        out["ray_data_overhead"] = json.loads(res["steps"][-1]["stdout"].splitlines()[-1])
    except (IndexError, ValueError):
        out["ray_data_overhead"] = {"error": res["steps"][-1]["stderr"][-500:]}
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
