"""``rag index PATH...``: load files, chunk them, index the chunks, and keep a file manifest so a
rerun re-embeds only new or changed files, removes deleted ones, and resumes after a kill.

The file manifest maps each source file to the SHA-256 of its bytes and the ids of its chunks,
plus the chunker's (and situator's) config. It is not a file of its own: it is the index's
``ingest`` cursor (:meth:`rag.pipeline.Pipeline.index`), written in the same atomic commit as the
chunks it describes (:mod:`rag.index`). Chunks are committed in batches of about
``batch_size``, file by file, so ``kill -9`` in the middle of a long embedding run loses at most
the batch in flight: the rerun finds the committed files unchanged and embeds only the rest.
Stale chunks (changed or deleted files) are dropped in the first commit, together with their
manifest entries. A changed chunker config (``--chunk-size``...) re-chunks every file; a rerun
with nothing changed writes nothing.

>>> pipe = lambda: Pipeline(BM25Retriever())
>>> index_paths(["notes/"], "idx", new_pipeline=pipe).lines()[0]     # doctest: +SKIP
'files: 12 new, 0 changed, 0 unchanged, 0 removed; 48 chunks added, 0 removed (0.4s)'
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rag.errors import ConfigError
from rag.ingest.loaders import CsvColumns, load_paths
from rag.ingest.splitter import Chunker, find_encoder
from rag.types import Document

MANIFEST = "ingest.json"  # where indexes before the cursor kept the manifest
CURSOR = "ingest"
DEFAULT_BATCH = 2_000
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


def read_manifest(out: str | Path) -> dict[str, Any] | None:
    """The file manifest of the index folder ``out`` (``None``: not an index built from files).
    Indexes written before the manifest became a cursor kept it in ``ingest.json``."""
    from rag.index import IndexFolder, is_index

    out = Path(out)
    if not is_index(out):
        return None
    body = IndexFolder(out).read_manifest() or {}
    found = (body.get("cursors") or {}).get(CURSOR)
    if found is None and (out / MANIFEST).exists():
        found = json.loads((out / MANIFEST).read_text(encoding="utf-8"))
    return found


def count_overlong(retriever: Any, docs: Sequence[Document]) -> tuple[int, int | None]:
    """How many of ``docs`` the retriever's dense encoder will truncate (0, None without one)."""
    enc = find_encoder(retriever)
    if enc is None or not docs:
        return 0, None
    return enc.count_overlong([d.full_text for d in docs]), enc.max_length


def _open_or_create(out: Path, new_pipeline: Callable[[], Any]) -> Any:
    from rag.index import is_index
    from rag.pipeline import Pipeline

    if is_index(out):
        return Pipeline.open(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ConfigError(f"{str(out)!r} is not an index and not empty; choose another --out")
    pipe = new_pipeline()
    pipe.save(out)  # generation 1: the config, no documents yet
    return pipe


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
    batch_size: int = DEFAULT_BATCH,
    progress: Callable[[int, int], None] | None = None,
    workers: int = 1,
) -> IndexReport:
    """Index (or incrementally re-index) files into the index folder ``out``.

    ``new_pipeline()`` builds the pipeline for a new index; an existing one is reopened.
    ``chunker`` (e.g. from a YAML config) replaces the one built from the retriever's encoder;
    ``situator`` (:class:`~rag.ingest.contextual.Situator`) adds LLM-written context;
    ``batch_size`` chunks (rounded up to whole files) go into each commit; ``progress(done,
    total)`` is called after each commit with the documents (files, records) indexed so far;
    ``workers > 1`` encodes each batch in that many processes before this process commits it
    (:mod:`rag.ingest.workers`)."""
    from rag.ingest.workers import encode_pool

    if batch_size < 1:
        raise ConfigError(f"--batch-size must be >= 1, got {batch_size}")
    t0 = time.perf_counter()
    out = Path(out)
    manifest = read_manifest(out)
    pipe = _open_or_create(out, new_pipeline)
    try:
        with encode_pool(pipe.retriever, workers) as pool:
            report = _index_files(
                pipe, manifest, paths, include, exclude, strict, chunk_size, chunk_overlap,
                chunk_records, csv_columns, warn, chunker, situator, batch_size,
                progress if progress is not None else (lambda done, total: None), pool,
            )
        if (out / MANIFEST).exists():  # the old side file: the cursor replaces it
            (out / MANIFEST).unlink()
    finally:
        pipe.close()
    report.seconds = time.perf_counter() - t0
    return report


def _default_chunker(
    pipe: Any, chunk_size: int | None, chunk_overlap: int | None, situator: Any
) -> Chunker:
    kw: dict[str, Any] = {}
    if chunk_size is not None:
        kw["chunk_size"] = chunk_size
    if chunk_overlap is not None:
        kw["chunk_overlap"] = chunk_overlap
    if situator is not None:
        kw["reserve_tokens"] = situator.max_new_tokens + 2
    return Chunker.for_retriever(pipe.retriever, **kw)


def _chunks_of(d: Document, chunker: Chunker, chunk_records: bool, situator: Any) -> list[Document]:
    if d.metadata.get("format") in RECORD_FORMATS and not chunk_records:
        return [d]  # a JSONL/CSV record is a document already
    parts = chunker.split_one(d)
    return situator.situate(d, parts) if situator is not None else parts


def _index_files(
    pipe: Any,
    manifest: dict[str, Any] | None,
    paths: Sequence[str | Path],
    include: Sequence[str],
    exclude: Sequence[str],
    strict: bool,
    chunk_size: int | None,
    chunk_overlap: int | None,
    chunk_records: bool,
    csv_columns: CsvColumns | None,
    warn: Callable[[str], None] | None,
    chunker: Chunker | None,
    situator: Any,
    batch_size: int,
    progress: Callable[[int, int], None],
    pool: Any,
) -> IndexReport:
    if chunker is None:
        chunker = _default_chunker(pipe, chunk_size, chunk_overlap, situator)
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
    files = {s: v for s, v in old_files.items() if s not in stale}

    def cursor() -> tuple[str, dict[str, Any]]:  # a copy: the committed value must not move
        return CURSOR, copy.deepcopy({**settings, "files": files})

    if drop or (manifest is not None and manifest != cursor()[1]):
        # stale chunks and their manifest entries leave in one commit, before anything is added
        report.chunks_removed = pipe.delete(drop, cursor=cursor())
    batch: list[Document] = []
    done = [0]  # documents whose chunks are committed or in the batch

    def commit() -> None:  # these chunks with their files' entries, atomically
        over, report.max_length = count_overlong(pipe.retriever, batch)
        report.overlong += over
        report.encoded += len(batch)
        pool.prefill(batch)  # --workers: the vectors, from the worker processes, into the cache
        pipe.index(list(batch), cursor=cursor())
        report.chunks_added += len(batch)
        batch.clear()
        progress(done[0], len(res.documents))

    for done[0], d in enumerate(res.documents, 1):
        parts = _chunks_of(d, chunker, chunk_records, situator)
        src = str(d.metadata["source"])
        entry = files.setdefault(src, {"sha256": res.files[src], "chunks": []})
        entry["chunks"].extend(c.id for c in parts)
        batch.extend(parts)
        if len(batch) >= batch_size:
            commit()
    for s, digest in res.files.items():  # files that gave no chunks (empty) are still known
        files.setdefault(s, {"sha256": digest, "chunks": []})
    if batch:
        commit()
    elif pipe.cursor(CURSOR) != cursor()[1]:
        pipe.delete([], cursor=cursor())
    return report
