"""TREC run and qrels files, read and written exactly as trec_eval expects.

Run lines: ``qid Q0 docid rank score tag`` (rank is ignored, as trec_eval ignores it).
Qrels lines: ``qid iter docid rel`` (integer ``rel``; ``iter`` ignored).
Bad lines raise :class:`~rag.core.errors.DataError` naming file and line; a document listed twice
for one query is an error, as in trec_eval (``form_res_rels: duplicate docs``), unless
``on_duplicate`` says to keep the highest score (``"max"``) or the first line (``"first"``).

A run written with ``config=`` gets a sidecar ``<file>.config.json`` holding the configuration
that produced it, so a number can always be traced to its system.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, Literal

import numpy as np

from evals.measures.prepare import Qrels, Run
from rag.core.errors import ConfigError, DataError
from rag.index.persist import atomic_write_text

OnDuplicate = Literal["error", "max", "first"]


def _open(path: Path):  # type: ignore[no-untyped-def]
    import gzip

    if not path.exists():
        raise DataError(f"file {str(path)!r} does not exist")
    return (
        gzip.open(path, "rt", encoding="utf-8")
        if path.suffix == ".gz"
        else open(path, encoding="utf-8")
    )


def read_run(
    path: str | os.PathLike[str], on_duplicate: OnDuplicate = "error"
) -> dict[str, dict[str, float]]:
    """Read a TREC run file (``.gz`` too) into ``qid -> docid -> score``."""
    if on_duplicate not in ("error", "max", "first"):
        raise ConfigError(f"on_duplicate must be 'error', 'max' or 'first', got {on_duplicate!r}")
    p = Path(path)
    run: dict[str, dict[str, float]] = {}
    with _open(p) as f:
        for lineno, line in enumerate(f, 1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) != 6:
                raise DataError(
                    f"{p}:{lineno}: expected 6 fields 'qid Q0 docid rank score tag', "
                    f"got {len(parts)}"
                )
            qid, _, doc, _, score_s, _ = parts
            try:
                score = float(score_s)
            except ValueError:
                raise DataError(f"{p}:{lineno}: score {score_s!r} is not a number") from None
            if math.isnan(score):
                raise DataError(f"{p}:{lineno}: score is NaN")
            q = run.setdefault(qid, {})
            if doc in q:
                if on_duplicate == "error":
                    raise DataError(
                        f"{p}:{lineno}: document {doc!r} appears twice for query {qid!r} "
                        "(trec_eval rejects this too); pass on_duplicate='max' or 'first' "
                        "to keep one"
                    )
                if on_duplicate == "first" or score <= q[doc]:
                    continue
            q[doc] = score
    return run


def write_run(
    run: Run,
    path: str | os.PathLike[str],
    tag: str = "ragnodes",
    config: dict[str, Any] | None = None,
) -> Path:
    """Write ``run`` in TREC format, ranks in trec_eval's order; ``config`` goes to a sidecar."""
    if not tag or any(c.isspace() for c in tag):
        raise ConfigError(f"run tag must be one word, got {tag!r}")
    p = Path(path)
    lines = []
    for qid, r in run.items():
        order = sorted(r, key=lambda d: (np.float32(r[d]), d), reverse=True)
        for i, d in enumerate(order, 1):
            lines.append(f"{qid} Q0 {d} {i} {r[d]!r} {tag}\n")
    atomic_write_text(p, "".join(lines))
    if config is not None:
        atomic_write_text(config_path(p), json.dumps(config, indent=2, sort_keys=True))
    return p


def config_path(run_path: str | os.PathLike[str]) -> Path:
    """Where the config of the run at ``run_path`` is saved: ``<run>.config.json``."""
    p = Path(run_path)
    return p.with_name(p.name + ".config.json")


def read_run_config(run_path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The config saved beside a run, or ``None`` if it was written without one."""
    p = config_path(run_path)
    return json.loads(p.read_text(encoding="utf-8")) if p.exists() else None


def read_qrels(path: str | os.PathLike[str]) -> dict[str, dict[str, int]]:
    """Read TREC qrels (``qid iter docid rel``) into ``qid -> docid -> rel``."""
    p = Path(path)
    qrels: dict[str, dict[str, int]] = {}
    with _open(p) as f:
        for lineno, line in enumerate(f, 1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) != 4:
                raise DataError(
                    f"{p}:{lineno}: expected 4 fields 'qid iter docid rel', got {len(parts)}"
                )
            qid, _, doc, rel_s = parts
            q = qrels.setdefault(qid, {})
            if doc in q:
                raise DataError(f"{p}:{lineno}: document {doc!r} judged twice for query {qid!r}")
            q[doc] = _int(rel_s, p, lineno)
    return qrels


def write_qrels(qrels: Qrels, path: str | os.PathLike[str]) -> Path:
    """Write ``qrels`` in TREC format (``qid 0 docid rel``)."""
    p = Path(path)
    body = "".join(f"{q} 0 {d} {int(r)}\n" for q, docs in qrels.items() for d, r in docs.items())
    atomic_write_text(p, body)
    return p


def _int(text: str, path: Path, lineno: int) -> int:
    try:
        return int(text)
    except ValueError:
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not value.is_integer():
            raise DataError(
                f"{path}:{lineno}: relevance {text!r} is not an integer (trec_eval reads integers)"
            ) from None
        return int(value)
