"""Where the benchmarks find the shared datasets and keep their caches (never inside the repo).

* ``DATA``: ``$RAGNODES_DATASETS``, else ``../shared/datasets`` beside the checkout (the layout
  CI and every worktree use).
* ``cache(name)``: ``$RAGNODES_BENCH_CACHE/<name>``, else ``<rag model cache>/bench-cache/<name>``
  (``$RAGNODES_CACHE``, default ``~/.cache/ragnodes``). The names in use: ``minilm`` (fp32
  MiniLM document vectors per set, ``<set>.npy`` + ``<set>.ids.json``), ``minilm_tokens`` (token
  vectors), ``kernels``, ``research`` (ANNCUR, xRAG), ``ingest`` (chunk vectors by text). They
  are plain files written atomically; deleting them only costs time.

Run from the repo root as ``python bench/<name>.py``; ``bench/`` is then on ``sys.path``.
"""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("RAGNODES_DATASETS", ROOT.parent / "shared" / "datasets"))


def cache(name: str) -> Path:
    """The cache folder ``name`` (see the module docstring); not created here."""
    root = os.environ.get("RAGNODES_BENCH_CACHE")
    if root:
        return Path(root) / name
    base = Path(os.environ.get("RAGNODES_CACHE", Path.home() / ".cache" / "ragnodes"))
    return base / "bench-cache" / name
