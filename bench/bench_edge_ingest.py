"""QdrantEdgeStore ingestion: wall time and peak RSS of ``add()`` for N synthetic vectors.

Each variant runs in a fresh child process (peak RSS = ``ru_maxrss``). ``--old FILE`` names a copy
of an earlier ``retrievers/stores/qdrant_edge.py`` to compare against the current one.

    python bench/bench_edge_ingest.py --docs 100000 --dim 384 [--old /tmp/old_edge.py]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def child(n: int, dim: int, module: str | None) -> dict:
    sys.path.insert(0, str(ROOT))
    import numpy as np

    if module:
        import importlib.util

        spec = importlib.util.spec_from_file_location("old_edge", module)
        mod = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
        spec.loader.exec_module(mod)  # type: ignore[union-attr]
        cls = mod.QdrantEdgeStore
    else:
        from retrievers.stores.qdrant_edge import QdrantEdgeStore as cls
    rng = np.random.default_rng(0)
    vecs = rng.standard_normal((n, dim), dtype=np.float32)
    ids = [f"d{i}" for i in range(n)]
    payloads = [{"metadata": {}} for _ in range(n)]
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with tempfile.TemporaryDirectory() as d:
        store = cls(path=d)
        t = time.perf_counter()
        store.add(ids, vecs, payloads)
        store._shard.flush()
        secs = time.perf_counter() - t
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        assert store.count() == n
        store.close()
    return {
        "add_s": round(secs, 1),
        "peak_rss_mb": round(peak / 1024),
        "rss_growth_mb": round((peak - base) / 1024),
        "input_mb": round(vecs.nbytes / 2**20),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--docs", type=int, default=100_000)
    ap.add_argument("--dim", type=int, default=384)
    ap.add_argument("--old", default=None)
    ap.add_argument("--child", default=None)
    a = ap.parse_args()
    if a.child is not None:
        print(json.dumps(child(a.docs, a.dim, a.child or None)))
        return
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out: dict = {"docs": a.docs, "dim": a.dim}
    for name, mod in (("old", a.old), ("new", "")):
        if name == "old" and not mod:
            continue
        cmd = [sys.executable, __file__, "--docs", str(a.docs), "--dim", str(a.dim), "--child", mod]
        res = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True)
        out[name] = json.loads(res.stdout.strip().splitlines()[-1])
    if "old" in out:
        out["rss_growth_ratio_new_over_old"] = round(
            out["new"]["rss_growth_mb"] / max(out["old"]["rss_growth_mb"], 1), 3
        )
        out["time_ratio_new_over_old"] = round(out["new"]["add_s"] / out["old"]["add_s"], 3)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
