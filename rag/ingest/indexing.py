"""The one ingest driver: ``rag index``, ``--workers``, ``--engine ray`` and ``rag eval --dataset``.

Files become records first (:func:`rag.ingest.loaders.load_paths`, or one JSONL corpus read as
it is), and the records are committed in batches, each with its cursor, through
:meth:`rag.pipeline.Pipeline.index` (the index layer's one writer, :mod:`rag.index`):

* :func:`index_paths` -- ``rag index PATH...``: load files, chunk them, index the chunks, and keep
  a file manifest so a rerun re-embeds only new or changed files, removes deleted ones, and
  resumes after a kill. ``--workers`` encodes each batch in worker processes first
  (:mod:`rag.ingest.workers`); the Ray engine (:func:`rag.ingest.ray_engine.index_paths_ray`)
  loads, chunks and embeds on a cluster and commits through the same :class:`FileCommits`. Both
  take one :class:`IngestSettings`.
* :func:`index_records` -- ``rag index corpus.jsonl``: a JSONL corpus as its records (ids and
  all), committed in batches with a record cursor; ``--append``, ``--overwrite``, and a rerun
  resumes after the last committed batch. :func:`delete` and :func:`repair` are ``rag index
  --delete`` / ``--repair``.

The file manifest maps each source file to the SHA-256 of its bytes and the ids of its chunks,
plus the chunker's (and situator's) config. It is not a file of its own: it is the index's
``ingest`` cursor (:meth:`rag.pipeline.Pipeline.index`), written in the same atomic commit as the
chunks it describes (:mod:`rag.index`). Chunks are committed in batches of about
``batch_size``, file by file, so ``kill -9`` in the middle of a long embedding run loses at most
the batch in flight (with ``--workers``, the two in flight: one encoded ahead while the previous
lands): the rerun finds the committed files unchanged and embeds only the rest.
Stale chunks (changed or deleted files) are dropped in the first commit, together with their
manifest entries. A changed chunker config (``--chunk-size``...) re-chunks every file; a rerun
with nothing changed writes nothing.

>>> pipe, settings = lambda: Pipeline(BM25Retriever()), IngestSettings(chunk_size=256)
>>> index_paths(["notes/"], "idx", pipe, settings).lines()[0]       # doctest: +SKIP
'files: 12 new, 0 changed, 0 unchanged, 0 removed; 48 chunks added, 0 removed (0.4s)'
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rag.core.errors import ConfigError, IndexCorruptError
from rag.core.types import Document
from rag.ingest.loaders import CsvColumns, load_paths
from rag.ingest.progress import NoProgress
from rag.ingest.splitter import Chunker, find_encoder

MANIFEST = "ingest.json"  # where indexes before the cursor kept the manifest
CURSOR = "ingest"
DEFAULT_BATCH = 2_000
RECORD_BATCH = 10_000  # records per commit of index_records (a JSONL corpus)
RECORD_FORMATS = ("jsonl", "csv")


@dataclass(frozen=True)
class IngestSettings:
    """How files become records and chunks, and how many chunks go into one commit: the one
    settings value of :func:`index_paths` and :func:`rag.ingest.ray_engine.index_paths_ray`.

    Args:
        include, exclude: glob patterns of files to take / leave (``--include``, ``--exclude``).
        strict: an unreadable file is an error instead of a warning.
        chunk_size, chunk_overlap: of the default chunker (the retriever encoder's tokens).
        chunk_records: split JSONL/CSV records too (else a record is one document).
        csv_columns: which CSV columns are text, id and title.
        chunker: replaces the default chunker (e.g. from a YAML config).
        batch_size: chunks per commit, rounded up to whole files.
        warn: where a skipped file's line goes (default: the engine's log).
    """

    include: Sequence[str] = ()
    exclude: Sequence[str] = ()
    strict: bool = False
    chunk_size: int | None = None
    chunk_overlap: int | None = None
    chunk_records: bool = False
    csv_columns: CsvColumns | None = None
    chunker: Chunker | None = None
    batch_size: int = DEFAULT_BATCH
    warn: Callable[[str], None] | None = None

    def check(self) -> None:
        if self.batch_size < 1:
            raise ConfigError(f"--batch-size must be >= 1, got {self.batch_size}")

    def chunker_for(self, pipe: Any, situator: Any = None) -> Chunker:
        """:attr:`chunker`, else the retriever's default one with these sizes."""
        if self.chunker is not None:
            return self.chunker
        kw: dict[str, Any] = {}
        if self.chunk_size is not None:
            kw["chunk_size"] = self.chunk_size
        if self.chunk_overlap is not None:
            kw["chunk_overlap"] = self.chunk_overlap
        if situator is not None:
            kw["reserve_tokens"] = situator.max_new_tokens + 2
        return Chunker.for_retriever(pipe.retriever, **kw)


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
    settings: IngestSettings | None = None,
    situator: Any = None,
    progress: Callable[[int, int], None] | None = None,
    workers: int = 1,
    monitor: Any = None,
) -> IndexReport:
    """Index (or incrementally re-index) files into the index folder ``out``.

    ``new_pipeline()`` builds the pipeline for a new index; an existing one is reopened.
    ``settings`` say how files are read and chunked and how many chunks a commit takes;
    ``situator`` (:class:`~rag.ingest.contextual.Situator`) adds LLM-written context;
    ``progress(done, total)`` is called after each commit with the documents (files, records)
    indexed so far; ``workers > 1`` encodes each batch in that many processes before this process
    commits it (:mod:`rag.ingest.workers`); ``monitor``
    (:class:`~rag.ingest.progress.IndexProgress`, what ``rag index`` shows) is told of files
    read, chunks made and chunks committed."""
    from rag.ingest.workers import encode_pool

    settings = settings if settings is not None else IngestSettings()
    settings.check()
    t0 = time.perf_counter()
    out = Path(out)
    manifest = read_manifest(out)
    pipe = _open_or_create(out, new_pipeline)
    try:
        with encode_pool(pipe.retriever, workers) as pool:
            report = _index_files(
                pipe,
                manifest,
                paths,
                settings,
                situator,
                progress if progress is not None else (lambda done, total: None),
                pool,
                monitor,
            )
        if (out / MANIFEST).exists():  # the old side file: the cursor replaces it
            (out / MANIFEST).unlink()
    finally:
        pipe.close()
        if monitor is not None:
            monitor.close()
    report.seconds = time.perf_counter() - t0
    return report


def _chunks_of(
    d: Document, chunker: Chunker, chunk_records: bool, situator: Any, progress: Any = None
) -> list[Document]:
    progress = progress if progress is not None else NoProgress()
    if d.metadata.get("format") in RECORD_FORMATS and not chunk_records:
        progress.chunks(1)
        return [d]  # a JSONL/CSV record is a document already
    parts = []
    for c in chunker.iter_split(d):  # counted as made: a long file shows progress while split
        parts.append(c)
        progress.chunks(1)
    return situator.situate(d, parts) if situator is not None else parts


class FileCommits:
    """The file cursor and the batched commits of one ``rag index`` run over files: the one
    writer shared by the in-process loop (:func:`index_paths`) and the Ray engine's driver
    (:mod:`rag.ingest.ray_engine`), so both commit the same chunks in the same batches with the
    same cursor.

    ``start(found)`` takes every file found (``source -> sha256``), drops the chunks of changed and
    deleted files in one commit; ``add(source, parts)`` queues one file's chunks (in file order)
    and commits every ``batch_size`` chunks, rounded up to whole files; ``finish()`` commits the
    rest. ``around_commit(batch)``, if given, is a context manager entered around each
    ``Pipeline.index`` (the Ray driver serves the batch's precomputed vectors there).

    ``ahead(batch)``, if given, starts a sealed batch's work elsewhere (``--workers``: encoding in
    the worker processes) and returns ``ready()``, called right before that batch's commit. A
    batch then lands once the next one is sealed (or at ``finish()``), with the cursor it was
    sealed with, so the parent chunks and commits while the workers encode: commits stay one at a
    time and in file order, and each commit's cursor names exactly the files it holds."""

    def __init__(
        self,
        pipe: Any,
        manifest: dict[str, Any] | None,
        chunker: Chunker,
        situator: Any,
        batch_size: int,
        report: IndexReport,
        around_commit: Callable[[list[Document]], Any] | None = None,
        progress: Callable[[int, int], None] | None = None,
        monitor: Any = None,
        ahead: Callable[[list[Document]], Callable[[], None]] | None = None,
    ) -> None:
        self.pipe, self.manifest, self.batch_size, self.report = pipe, manifest, batch_size, report
        self.monitor = monitor  # rag.ingest.progress.IndexProgress: chunks committed
        self.around_commit = around_commit
        self.ahead = ahead
        self.sealed: tuple[Any, ...] | None = None  # with ``ahead``: the batch not landed yet
        self.progress = progress  # (documents done, total) after each commit
        self.done = self.total = 0
        old: dict[str, dict[str, Any]] = dict(manifest["files"]) if manifest else {}
        self.settings: dict[str, Any] = {"chunker": chunker.to_config()}
        self.settings["situator"] = situator.to_config() if situator is not None else None
        if manifest is not None and any(manifest.get(k) != v for k, v in self.settings.items()):
            self.old_files, self.old = old, {s: {**v, "sha256": ""} for s, v in old.items()}
        else:
            self.old_files = self.old = old
        self.files: dict[str, dict[str, Any]] = {}
        self.found: dict[str, str] = {}
        self.batch: list[Document] = []

    def wanted(self, source: str, digest: str) -> bool:
        """Whether a file must be (re)loaded: new, changed, or chunked with other settings."""
        return bool(self.old.get(source, {}).get("sha256") != digest)

    def cursor(self) -> tuple[str, dict[str, Any]]:  # a copy: the committed value must not move
        return CURSOR, copy.deepcopy({**self.settings, "files": self.files})

    def start(self, found: dict[str, str]) -> None:
        report, old, old_files = self.report, self.old, self.old_files
        self.found = found
        stale = [s for s in old_files if s not in found or old[s]["sha256"] != found[s]]
        report.removed = sum(1 for s in stale if s not in found)
        report.changed = len(stale) - report.removed
        report.new = sum(1 for s in found if s not in old_files)
        report.unchanged = len(found) - report.new - report.changed
        drop = [cid for s in stale for cid in old_files[s]["chunks"]]
        self.files = {s: v for s, v in old_files.items() if s not in stale}
        if drop or (self.manifest is not None and self.manifest != self.cursor()[1]):
            # stale chunks and their manifest entries leave in one commit, before anything is added
            report.chunks_removed = self.pipe.delete(drop, cursor=self.cursor())

    def forget(self, source: str) -> None:
        """A file found by :meth:`start` turned out unreadable: it is not recorded (a rerun
        tries it again) and counts as removed if the index held it, not as new or changed."""
        if self.found.pop(source, None) is None:
            return
        if source not in self.old_files:
            self.report.new -= 1
        elif source not in self.files:  # stale: its chunks were dropped
            self.report.changed -= 1
            self.report.removed += 1

    def add(self, source: str, parts: list[Document], documents: int = 1) -> None:
        """Queue one document's (or file's) chunks; ``documents`` counts for ``progress``."""
        self.done += documents
        entry = self.files.setdefault(source, {"sha256": self.found[source], "chunks": []})
        entry["chunks"].extend(c.id for c in parts)
        self.batch.extend(parts)
        if len(self.batch) >= self.batch_size:
            self.commit()

    def commit(self) -> None:
        """Seal the queued chunks with their files' entries as one commit: landed now, or with
        ``ahead``, its work started now and landed after the next batch is sealed."""
        batch, self.batch = self.batch, []
        sealed = (batch, self.cursor(), self.done)
        if self.ahead is None:
            self._land(*sealed)
            return
        ready = self.ahead(batch)
        previous, self.sealed = self.sealed, (*sealed, ready)
        if previous is not None:
            self._land(*previous)

    def _land(
        self,
        batch: list[Document],
        cursor: tuple[str, dict[str, Any]],
        done: int,
        ready: Callable[[], None] | None = None,
    ) -> None:  # these chunks with their files' entries, atomically
        report = self.report
        over, report.max_length = count_overlong(self.pipe.retriever, batch)
        report.overlong += over
        report.encoded += len(batch)
        if ready is not None:
            ready()
        around = self.around_commit(batch) if self.around_commit else contextlib.nullcontext()
        with around:
            self.pipe.index(list(batch), cursor=cursor)
        report.chunks_added += len(batch)
        if self.monitor is not None:
            self.monitor.committed(len(batch))
        if self.progress is not None:
            self.progress(done, self.total)

    def finish(self) -> None:
        for s, digest in self.found.items():  # files that gave no chunks (empty) are still known
            self.files.setdefault(s, {"sha256": digest, "chunks": []})
        if self.batch:
            self.commit()
        if self.sealed is not None:
            previous, self.sealed = self.sealed, None
            self._land(*previous)
        if self.pipe.cursor(CURSOR) != self.cursor()[1]:
            self.pipe.delete([], cursor=self.cursor())


def _index_files(
    pipe: Any,
    manifest: dict[str, Any] | None,
    paths: Sequence[str | Path],
    settings: IngestSettings,
    situator: Any,
    progress: Callable[[int, int], None],
    pool: Any,
    monitor: Any = None,
) -> IndexReport:
    monitor = monitor if monitor is not None else NoProgress()
    chunker = settings.chunker_for(pipe, situator)
    report = IndexReport()
    commits = FileCommits(
        pipe,
        manifest,
        chunker,
        situator,
        settings.batch_size,
        report,
        None,
        progress,
        monitor=monitor,
        ahead=pool.ahead,  # --workers: batches encoded in the worker processes, one ahead
    )
    res = load_paths(
        paths,
        settings.include,
        settings.exclude,
        settings.strict,
        settings.csv_columns,
        only=commits.wanted,
        warn=settings.warn,
        progress=monitor.files,
    )
    report.skipped, report.ignored = [s.path for s in res.skipped], res.ignored
    commits.total = len(res.documents)
    commits.start(res.files)
    for d in res.documents:
        parts = _chunks_of(d, chunker, settings.chunk_records, situator, monitor)
        commits.add(str(d.metadata["source"]), parts)
    commits.finish()
    return report


# -- one JSONL corpus as its records: `rag index corpus.jsonl`, --delete, --repair ---------------
def source_key(paths: Sequence[str | os.PathLike[str]]) -> str:
    return "|".join(str(Path(p).resolve()) for p in paths)


def index_records(
    out: str | os.PathLike[str],
    docs: Sequence[Document],
    make_pipeline: Callable[[], Any],
    source: str,
    append: bool = False,
    overwrite: bool = False,
    batch_size: int = RECORD_BATCH,
    log: Callable[[str], None] = print,
) -> Any:
    """Index the records ``docs`` into the folder ``out`` in committed batches, each with the
    cursor ``source -> records in``; returns the pipeline.

    A folder that already holds an index is resumed when its cursor for ``source`` is short of
    ``len(docs)`` (an interrupted run: it never indexes a record twice); otherwise it needs
    ``append`` (add to it) or ``overwrite`` (replace it)."""
    from rag.index import IndexFolder, is_index
    from rag.index.validate import check_documents
    from rag.pipeline import Pipeline

    if batch_size < 1:
        raise ConfigError(f"--batch-size must be >= 1, got {batch_size}")
    docs = check_documents(docs)  # every record, before anything is written
    p = Path(out)
    legacy = (p / "config.json").exists() and not is_index(p)
    start = 0
    if (is_index(p) or legacy) and not overwrite:
        body = None if legacy else IndexFolder(p).read_manifest()
        done = body["cursors"].get(source) if body is not None else None
        if append:
            pipe = Pipeline.open(p)
        elif done is not None and done < len(docs):
            pipe, start = Pipeline.open(p), int(done)
            log(f"resuming {p}: {start} of {len(docs)} records were committed")
        else:
            raise ConfigError(
                f"{str(p)!r} already holds an index; pass --append to add to it or "
                "--overwrite to replace it"
            )
    elif p.exists() and any(p.iterdir()) and not overwrite and not is_index(p):
        raise ConfigError(f"{str(p)!r} is not empty; pass --overwrite or choose another --out")
    else:
        pipe = make_pipeline()
        created = not p.exists()
        try:
            pipe.save(p)  # generation 1: the config, no documents yet
            _first_batch(pipe, docs, source, 0, batch_size)
        except BaseException:
            pipe.close()
            if created:  # nothing of the corpus was committed: leave no folder behind
                shutil.rmtree(p, ignore_errors=True)
            raise
        start = min(batch_size, len(docs))
    for s in range(start, len(docs), batch_size):
        batch = list(docs[s : s + batch_size])
        pipe.index(batch, cursor=(source, s + len(batch)))
    return pipe


def _first_batch(pipe: Any, docs: Sequence[Document], source: str, start: int,
                 batch_size: int) -> None:
    batch = list(docs[start : start + batch_size])
    if batch:
        pipe.index(batch, cursor=(source, start + len(batch)))


def delete(out: str | os.PathLike[str], ids: Sequence[str]) -> int:
    """``rag index --delete ID``: remove ``ids`` from the index ``out`` (one commit)."""
    from rag.pipeline import Pipeline

    pipe = Pipeline.open(out)
    try:
        return int(pipe.delete(list(ids)))
    finally:
        pipe.close()


def repair(path: str | os.PathLike[str], log: Callable[[str], None] = print) -> int:
    """Rebuild an index from the document segments that still verify: damaged segments' documents
    are dropped (and counted), every retriever structure is rebuilt. Returns documents kept."""
    from rag.core.nodes import Node
    from rag.index import IndexFolder
    from rag.index.docstore import DocumentStore
    from rag.index.files import file_digest
    from rag.index.folder import MANIFEST as INDEX_MANIFEST
    from rag.pipeline import Pipeline

    folder = IndexFolder(path)
    body = folder.read_manifest()  # a damaged manifest cannot be repaired: it says so
    if body is None:
        raise ConfigError(f"{str(path)!r} has no {INDEX_MANIFEST}; nothing to repair, re-ingest")
    good: list[Any] = []
    lost = 0
    for seg in body["docs"]["segments"]:
        names = [f"{seg['name']}.docs"]
        ok = all(
            (folder.path / n).exists()
            and (folder.path / n).stat().st_size == body["files"][n]["bytes"]
            and file_digest(folder.path / n) == body["files"][n]["sha256"]
            for n in names
        )
        if not ok:
            lost += seg["n"] - len(seg["deleted"])
            continue
        try:
            store = DocumentStore.open(folder.path, {"segments": [seg]})
        except (IndexCorruptError, ValueError):
            lost += seg["n"] - len(seg["deleted"])
            continue
        good.extend(store[i] for i in store)
    retriever = Pipeline.of(Node.from_config(body["config"])).retriever
    pipe = Node.from_config(body["pipeline"]) if body.get("pipeline") else None
    pipe = pipe if isinstance(pipe, Pipeline) else Pipeline(retriever=retriever)
    pipe.retriever = retriever
    pipe.index(good)
    pipe.save(folder.path, config=body.get("pipeline") is not None)
    note = f", lost {lost} in damaged segments (re-add them)" if lost else ""
    log(f"repaired {path}: kept {len(good)} documents{note}; rebuilt the retriever state")
    return len(good)
