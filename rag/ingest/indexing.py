"""``rag index PATH...``: load files, chunk them, index the chunks, and keep a file manifest so a
rerun re-embeds only new or changed files and removes deleted ones.

The manifest (``ingest.json`` in the index folder) maps each source file to the SHA-256 of its
bytes and the ids of its chunks, plus the chunker's (and situator's) config. It is built on the
public ``Pipeline.open`` / ``retriever.delete`` / ``Pipeline.index`` / ``Pipeline.save`` API
only. The updated index and its manifest are written to a fresh sibling folder that is then
swapped in, so the folder always holds an index and the manifest that describes it; a run killed
before the swap leaves the old pair, and the rerun redoes the work. A changed chunker config
(``--chunk-size``...) re-chunks every file; a rerun with nothing changed writes nothing.

>>> pipe = lambda: Pipeline(BM25Retriever())
>>> index_paths(["notes/"], "idx", new_pipeline=pipe).lines()[0]     # doctest: +SKIP
'files: 12 new, 0 changed, 0 unchanged, 0 removed; 48 chunks added, 0 removed'
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rag.ingest.loaders import CsvColumns, load_paths
from rag.ingest.splitter import Chunker, find_encoder
from rag.types import Document

MANIFEST = "ingest.json"
RECORD_FORMATS = ("jsonl", "csv")


@dataclass
class IndexReport:
    new: int = 0
    changed: int = 0
    unchanged: int = 0
    removed: int = 0
    chunks_added: int = 0
    chunks_removed: int = 0
    skipped: list[str] = field(default_factory=list)
    ignored: int = 0
    overlong: int = 0
    encoded: int = 0
    max_length: int | None = None
    seconds: float = 0.0

    def lines(self) -> list[str]:
        out = [
            f"files: {self.new} new, {self.changed} changed, {self.unchanged} unchanged, "
            f"{self.removed} removed; {self.chunks_added} chunks added, "
            f"{self.chunks_removed} removed ({self.seconds:.1f}s)",
        ]
        if self.skipped or self.ignored:
            out.append(
                f"skipped {len(self.skipped)} bad files (warned above); ignored {self.ignored} "
                "files of unsupported types"
            )
        if self.max_length is not None:
            out.append(
                f"{self.overlong} of {self.encoded} texts are longer than the encoder's "
                f"max_length ({self.max_length} tokens) and were truncated when embedded"
                + ("" if not self.overlong else "; pass --chunk-records to split them")
            )
        return out


def read_manifest(out: Path) -> dict[str, Any] | None:
    old = out.with_name(out.name + ".old")
    if not out.exists() and (old / MANIFEST).exists():  # killed between the two renames
        os.replace(old, out)
    from rag.index import is_index

    p = out / MANIFEST
    if not p.exists() or not (is_index(out) or (out / "config.json").exists()):
        return None
    return json.loads(p.read_text(encoding="utf-8"))


def count_overlong(retriever: Any, docs: Sequence[Document]) -> tuple[int, int | None]:
    """How many of ``docs`` the retriever's dense encoder will truncate (0, None without one)."""
    enc = find_encoder(retriever)
    if enc is None or not docs:
        return 0, None
    return enc.count_overlong([d.full_text for d in docs]), enc.max_length


def _save_swapped(pipe: Any, out: Path, manifest: str) -> None:
    """Save the pipeline and manifest into a fresh sibling folder, then swap it in.

    A reopened index memory-maps its arrays (BM25, vectors); saving over the very files that
    are mapped truncates them under the reader, so the new index never overwrites the old one
    in place. Between the two renames the old index is at ``<out>.old``; :func:`read_manifest`
    puts it back if a kill happened right there."""
    import shutil

    from rag.persist import atomic_write_text

    new, old = out.with_name(out.name + ".new"), out.with_name(out.name + ".old")
    shutil.rmtree(new, ignore_errors=True)
    pipe.save(new)
    atomic_write_text(new / MANIFEST, manifest)
    shutil.rmtree(old, ignore_errors=True)
    if out.exists():
        os.replace(out, old)
    os.replace(new, out)
    shutil.rmtree(old, ignore_errors=True)


def index_paths(
    paths: Sequence[str | Path],
    out: str | Path,
    new_pipeline: Callable[[], Any],
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
    strict: bool = False,
    chunk_size: int | None = None,
    chunk_overlap: int | None = None,
    chunk_records: bool = False,
    csv_columns: CsvColumns | None = None,
    warn: Callable[[str], None] | None = None,
    chunker: Chunker | None = None,
    situator: Any = None,
) -> IndexReport:
    """Index (or incrementally re-index) files into the index folder ``out``.

    ``new_pipeline()`` builds the pipeline for a new index; an existing one is reopened.
    ``chunker`` (e.g. from a YAML config) replaces the one built from the retriever's encoder;
    ``situator`` (:class:`~rag.ingest.contextual.Situator`) adds LLM-written context."""
    from rag.pipeline import Pipeline

    t0 = time.perf_counter()
    out = Path(out)
    manifest = read_manifest(out)
    pipe = Pipeline.open(out) if manifest is not None else new_pipeline()
    kw: dict[str, Any] = {}
    if chunk_size is not None:
        kw["chunk_size"] = chunk_size
    if chunk_overlap is not None:
        kw["chunk_overlap"] = chunk_overlap
    if situator is not None:
        kw["reserve_tokens"] = situator.max_new_tokens + 2
    if chunker is None:
        chunker = Chunker.for_retriever(pipe.retriever, **kw)
    old: dict[str, dict[str, Any]] = dict(manifest["files"]) if manifest else {}
    settings: dict[str, Any] = {"chunker": chunker.to_config()}
    settings["situator"] = situator.to_config() if situator is not None else None
    if manifest is not None and any(manifest.get(k) != v for k, v in settings.items()):
        old_files, old = old, {s: {**v, "sha256": ""} for s, v in old.items()}
    else:
        old_files = old
    res = load_paths(
        paths,
        include,
        exclude,
        strict,
        csv_columns,
        only=lambda src, h: old.get(src, {}).get("sha256") != h,
        warn=warn,
    )
    report = IndexReport(skipped=[s.path for s in res.skipped], ignored=res.ignored)
    stale = [s for s in old_files if s not in res.files or old[s]["sha256"] != res.files[s]]
    report.removed = sum(1 for s in stale if s not in res.files)
    report.changed = len(stale) - report.removed
    report.new = sum(1 for s in res.files if s not in old_files)
    report.unchanged = len(res.files) - report.new - report.changed
    drop = [cid for s in stale for cid in old_files[s]["chunks"]]
    report.chunks_removed = pipe.retriever.delete(drop) if drop else 0
    chunks: list[Document] = []
    for d in res.documents:
        whole = d.metadata.get("format") in RECORD_FORMATS and not chunk_records
        parts = [d] if whole else chunker.split_one(d)
        chunks.extend(situator.situate(d, parts) if situator is not None and not whole else parts)
    report.overlong, report.max_length = count_overlong(pipe.retriever, chunks)
    report.encoded = len(chunks)
    if chunks:
        pipe.index(chunks)
    report.chunks_added = len(chunks)
    files = {s: v for s, v in old_files.items() if s not in stale}
    for s, digest in res.files.items():
        if s not in files:
            files[s] = {"sha256": digest, "chunks": []}
    for c in chunks:
        files[str(c.metadata["source"])]["chunks"].append(c.id)
    manifest = {**settings, "files": files}
    if chunks or drop or read_manifest(out) != manifest:
        _save_swapped(pipe, out, json.dumps(manifest, indent=1))
    report.seconds = time.perf_counter() - t0
    return report
