"""``rag index SOURCE --engine ray [--ray-address ADDR]``: the file ingestion of ``rag index``
run as a Ray Data pipeline across a cluster, written by one writer in the driver.

::

    driver: discover + hash files, diff against the file cursor (only new / changed files go on)
      -> read + load + chunk         CPU tasks, ``files_per_task`` files each  (ray_stages)
      -> embed                       an actor pool: one encoder per actor, CPU or ``num_gpus``
      -> write                       the driver, in file order: ``FileCommits`` -> Pipeline.index

The write is the one writer of ``rag index`` (:class:`rag.ingest.indexing.FileCommits`): the same
file cursor, the same batches of ``batch_size`` chunks rounded up to whole files, each one atomic
commit carrying the manifest of the files it completes. The vectors the actors computed are
served to the retriever's own encoder for that commit (:func:`rag.embed_cache.precomputed`), so
the index layer (an index folder, or a ``qdrant_hybrid`` collection by ``path=``/``url=``:
``--config``) builds its structures exactly as in one process. Hence:

* the same chunk ids and documents as ``rag index`` (the same loaders, chunker and ids), and the
  same index layout; vectors equal to one process's within fp32 rounding (a text's vector
  depends on the padding of the batch it was encoded in; docs/scaling.md states the tolerance);
* resumable and idempotent: a killed actor or task is retried by Ray (Ray Data's actors run
  with ``max_restarts=-1, max_task_retries=-1``, tasks with ``max_retries=3``); a killed driver
  loses at most the batch in flight and a rerun embeds only the files the cursor does not
  list; chunk ids (and Qdrant point ids) are deterministic, so nothing is indexed twice;
* a bad file is skipped with one ``warning: skipped PATH: reason`` line (``strict``: an error),
  as in ``rag index``; progress per stage is printed (files, chunks, embedded, written).

Embedding in the actors covers every dense :class:`~rag.encoders.TransformerEncoder` of the
retriever (dense, hybrid, ``qdrant_hybrid``); other index-time models (token encoders, SPLADE)
and BM25 run in the driver. An encoder class with ``precomputable = True`` whose documents go
through :func:`rag.embed_cache.cache_for` takes part too (:func:`document_encoders`): the hook
for a remote OpenAI-compatible embedding endpoint (the actors then only make HTTP calls).
Files must be readable at the same path from every node (a shared file system). Ray: Moritz
et al., "Ray: A Distributed Framework for Emerging AI Applications", OSDI 2018.

>>> cluster = RaySettings(address="127.0.0.1:6379")
>>> index_paths_ray(["notes/"], "idx", new_pipeline, IngestSettings(), cluster)  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rag.errors import ConfigError, DataError
from rag.ingest.indexing import (
    FileCommits,
    IndexReport,
    IngestSettings,
    _open_or_create,
    read_manifest,
)
from rag.ingest.loaders import MAX_BYTES, discover, doc_id_for, file_hash
from rag.ingest.ray_stages import Embedder, Progress, document_text, load_and_chunk
from rag.ingest.splitter import Chunker
from rag.types import Document

LOAD_CPUS = 0.25  # a load task is light (read, parse, tokenize): it shares a core with an actor
EMBED_CPUS = 1.0 - LOAD_CPUS


@dataclass
class RaySettings:
    """How the Ray pipeline runs.

    Args:
        address: the cluster (``host:port`` of ``ray start --head``; ``None``: ``$RAY_ADDRESS``,
            else a local Ray started for this run).
        workers: embed actors (default: one per CPU of the cluster, or per GPU with ``gpus``).
        gpus: GPUs per embed actor (``0``: CPU; ``1``: one GPU each, the encoder on CUDA).
        embed_batch: chunks per embed call of an actor.
        files_per_task: files per load-and-chunk task.
        threads: torch threads per embed actor.
    """

    address: str | None = None
    workers: int | None = None
    gpus: float = 0.0
    embed_batch: int = 64
    files_per_task: int = 4
    threads: int = 1

    def check(self) -> None:
        if self.workers is not None and self.workers < 1:
            raise ConfigError(f"--ray-workers must be >= 1, got {self.workers}")
        if self.gpus < 0:
            raise ConfigError(f"--ray-gpus must be >= 0, got {self.gpus}")
        if self.embed_batch < 1 or self.files_per_task < 1 or self.threads < 1:
            raise ConfigError("embed_batch, files_per_task and threads must be >= 1")


def document_encoders(node: Any) -> list[tuple[Any, str]]:
    """``(encoder, fields)`` of every dense document encoder in a retriever tree (a composite's
    children included), in a fixed order: a :class:`~rag.encoders.TransformerEncoder`, or any
    encoder node whose class sets ``precomputable = True`` (the hook for other backends, e.g.
    a remote OpenAI-compatible embedder: its ``encode(texts, kind="document")`` must return
    ``(N, D)`` float32 and send documents through :func:`rag.embed_cache.cache_for`)."""
    from rag.encoders import TransformerEncoder

    out: list[tuple[Any, str]] = []
    enc = getattr(node, "encoder", None)
    if isinstance(enc, TransformerEncoder) or getattr(type(enc), "precomputable", False):
        out.append((enc, getattr(node, "fields", "title+text")))
    for child in getattr(node, "retrievers", None) or []:
        out.extend(document_encoders(child))
    return out


def _key(enc: Any, fields: str) -> str:
    return json.dumps([enc.to_config(), fields], sort_keys=True)


def index_paths_ray(
    paths: Sequence[str | Path],
    out: str | Path,
    new_pipeline: Callable[[], Any],
    settings: IngestSettings | None = None,
    cluster: RaySettings | None = None,
    log: Callable[[str], None] | None = None,
) -> IndexReport:
    """:func:`rag.ingest.indexing.index_paths` on a Ray cluster (see the module docstring), with
    the same ``settings``; returns the same report. ``cluster`` says how Ray runs; ``log`` gets
    the per-stage progress lines (default: stderr)."""
    from rag.extras import require

    settings = settings if settings is not None else IngestSettings()
    cluster = cluster or RaySettings()
    cluster.check()
    settings.check()
    ray = require("ray", extra="ray", feature="rag index --engine ray")
    require("ray.data", extra="ray", feature="rag index --engine ray")
    t0 = time.perf_counter()
    started = not ray.is_initialized()
    if started:
        _check_reachable(cluster.address)  # before anything is written
    out = Path(out)
    manifest = read_manifest(out)
    pipe = _open_or_create(out, new_pipeline)
    try:
        if started:
            logging.getLogger("ray").setLevel(logging.WARNING)
            ray.init(address=cluster.address, log_to_driver=False, logging_level=logging.WARNING)
        report = _run(
            ray,
            pipe,
            manifest,
            paths,
            settings,
            cluster,
            log or (lambda line: print(line, file=sys.stderr, flush=True)),
        )
    finally:
        pipe.close()
        if started and ray.is_initialized():
            ray.shutdown()
    report.seconds = time.perf_counter() - t0
    return report


def _check_reachable(address: str | None) -> None:
    """A ``host:port`` that refuses connections is one line now, not minutes of Ray retrying."""
    import re
    import socket

    m = re.fullmatch(r"(?:ray://)?\[?([\w.:-]+?)\]?:(\d+)", address or "")
    if m is None:  # None, "auto", "local": Ray's own resolution
        return
    try:
        socket.create_connection((m.group(1), int(m.group(2))), timeout=5).close()
    except OSError as e:
        raise ConfigError(
            f"cannot reach the Ray cluster at {address!r} ({e.strerror or e}); start it with "
            "`ray start --head` or fix --ray-address"
        ) from None


def _hash_files(
    paths: Sequence[str | Path],
    include: Sequence[str],
    exclude: Sequence[str],
    strict: bool,
    report: IndexReport,
    say: Callable[[str], None],
) -> tuple[dict[str, str], list[dict[str, str]]]:
    """Every file found (``source -> sha256``, as ``load_paths`` hashes them) and the load
    stage's rows (path, source, doc_id, sha256) of all of them."""
    roots = list(paths)
    found, report.ignored = discover(roots, include, exclude)
    files: dict[str, str] = {}
    rows: list[dict[str, str]] = []
    for f, source in found:
        try:
            data = f.read_bytes() if f.stat().st_size <= MAX_BYTES else b""
        except OSError as e:
            _skip(source, str(e), strict, report, say)
            continue
        files[source] = file_hash(data)
        rows.append(
            {
                "path": str(f),
                "source": source,
                "doc_id": doc_id_for(source, roots),
                "sha256": files[source],
            }
        )
    return files, rows


def _skip(source: str, reason: str, strict: bool, report: IndexReport, say: Callable) -> None:
    if strict:
        raise DataError(f"{source}: {reason}; fix or --exclude it (or drop --strict)")
    report.skipped.append(source)
    say(f"skipped {source}: {reason}")


def _dataset(
    ray: Any,
    rows: list[dict[str, str]],
    chunker: Chunker,
    enc_keys: list,
    settings: RaySettings,
    chunk_records: bool,
    csv_columns: Any,
    progress: Any,
) -> Any:
    data = ray.data
    ctx = data.DataContext.get_current()
    ctx.execution_options.preserve_order = True  # rows reach the writer in file order
    ctx.enable_progress_bars = False
    ctx.print_on_execution_start = False
    per = settings.files_per_task
    ds = data.from_items(rows, override_num_blocks=max(1, math.ceil(len(rows) / per)))
    ds = ds.map_batches(
        load_and_chunk,
        batch_size=per,
        batch_format="numpy",
        fn_kwargs={
            "chunker": json.dumps(chunker.to_config(), sort_keys=True),
            "chunk_records": chunk_records,
            "csv_columns": csv_columns,
            "progress": progress,
        },
        num_cpus=LOAD_CPUS,  # a task lost with its worker runs again (Ray: max_retries=3)
    )
    if not enc_keys:  # BM25 alone: nothing to embed
        return ds
    if settings.workers is not None:
        workers = settings.workers
    else:
        res = ray.cluster_resources()
        workers = (
            int(res.get("GPU", 0) // settings.gpus) if settings.gpus else int(res.get("CPU", 1))
        )
    return ds.map_batches(
        Embedder,
        batch_size=settings.embed_batch,
        batch_format="numpy",
        compute=data.ActorPoolStrategy(size=max(1, workers)),
        fn_constructor_kwargs={
            "encoders": [(json.dumps(json.loads(k)[0]), json.loads(k)[1]) for k in enc_keys],
            "threads": settings.threads,
            "progress": progress,
        },
        num_cpus=EMBED_CPUS if not settings.gpus else LOAD_CPUS,
        num_gpus=settings.gpus or None,
        # Ray Data's actor defaults, relied on (tests/test_ray_ingest.py kills an actor):
        # max_restarts=-1 (a killed actor is restarted), max_task_retries=-1 (its batch resent)
    )


class _Writer:
    """The driver's side: rows in file order -> one file's chunks -> ``FileCommits``; each
    commit is served the actors' vectors of its chunks."""

    def __init__(
        self,
        pipe: Any,
        commits: FileCommits,
        enc_keys: list[str],
        strict: bool,
        say: Callable[[str], None],
    ) -> None:
        self.pipe, self.commits, self.enc_keys = pipe, commits, enc_keys
        self.strict, self.say = strict, say
        self.pending: list[list[np.ndarray]] = []  # vectors of commits.batch, row for row
        self.current: str | None = None
        self.parts: list[Document] = []
        self.vecs: list[list[np.ndarray]] = []
        self.missed = 0

    @contextlib.contextmanager
    def serve(self, batch: list[Document]) -> Iterator[None]:
        """The actors' vectors of this commit, served to the retriever's own encoders."""
        with contextlib.ExitStack() as stack:
            caches = []
            for enc, fields in document_encoders(self.pipe.retriever):  # this commit's objects
                col = self.enc_keys.index(_key(enc, fields))
                vecs = np.stack([self.pending[i][col] for i in range(len(batch))])
                texts = [document_text(d, fields) for d in batch]
                caches.append(stack.enter_context(_precomputed(enc, texts, vecs)))
            yield
        self.missed += sum(c.stats["misses"] for c in caches)
        del self.pending[: len(batch)]

    def flush(self) -> None:
        if self.current is not None:
            self.pending.extend(self.vecs)
            self.commits.add(self.current, list(self.parts))
        self.current, self.parts, self.vecs = None, [], []

    def take(self, block: dict[str, np.ndarray]) -> None:
        """One block of rows from the embed stage (file order: a file's rows are contiguous)."""
        for i, kind in enumerate(block["kind"]):
            source = str(block["source"][i])
            if kind == "skip":
                self.commits.forget(source)  # not recorded: a rerun tries it again
                _skip(source, str(block["reason"][i]), self.strict, self.commits.report, self.say)
                continue
            if source != self.current:
                self.flush()
                self.current = source
            if kind == "chunk":
                self.parts.append(Document.model_validate_json(str(block["doc"][i])))
                self.vecs.append([block[f"v{n}"][i] for n in range(len(self.enc_keys))])


def _run(
    ray: Any,
    pipe: Any,
    manifest: dict[str, Any] | None,
    paths: Sequence[str | Path],
    settings: IngestSettings,
    cluster: RaySettings,
    log: Callable[[str], None],
) -> IndexReport:
    say = settings.warn if settings.warn is not None else log
    chunker = settings.chunker_for(pipe)
    report = IndexReport()
    enc_keys = list(dict.fromkeys(_key(e, f) for e, f in document_encoders(pipe.retriever)))
    commits = FileCommits(pipe, manifest, chunker, None, settings.batch_size, report)
    writer = _Writer(pipe, commits, enc_keys, settings.strict, say)
    commits.around_commit = writer.serve
    found, rows = _hash_files(
        paths, settings.include, settings.exclude, settings.strict, report, say
    )
    commits.start(found)
    todo = [r for r in rows if commits.wanted(r["source"], r["sha256"])]
    progress = ray.remote(num_cpus=0)(Progress).remote() if todo else None
    last = 0.0

    def show(force: bool = False) -> None:
        nonlocal last
        if progress is None or (not force and time.perf_counter() - last < 2.0):
            return
        last = time.perf_counter()
        c = ray.get(progress.get.remote())
        log(
            f"progress: files {c['files']}/{len(todo)} loaded, chunks {c['chunks']}, "
            f"embedded {c['embedded']}, written {report.chunks_added}"
        )

    if todo:
        ds = _dataset(
            ray, todo, chunker, enc_keys, cluster, settings.chunk_records, settings.csv_columns,
            progress,
        )
        for block in ds.iter_batches(batch_size=None, batch_format="numpy"):
            writer.take(block)
            show()
        writer.flush()
    commits.finish()
    show(force=True)
    if writer.missed:  # only if an encoder's config differed between the actors and here
        log(f"warning: {writer.missed} vectors were not computed by the actors (embedded here)")
    return report


def _precomputed(enc: Any, texts: list[str], vecs: np.ndarray) -> Any:
    from rag.embed_cache import precomputed

    return precomputed(enc, texts, vecs)
