"""``rag index --workers N``: the embedding of a commit batch spread over ``N`` processes.

Encoding is all of a hybrid ingest's cost, and one process uses one core. With ``workers > 1``,
as soon as a commit batch is sealed its document texts that the embedding cache does not hold
yet are cut into ``N`` interleaved slices (length-balanced) and sent to ``N`` worker processes,
each running the same encoder config (:func:`encode_slice`, a pure function: config and texts
in, vectors out). The parent does not wait: it chunks the next batch and commits the previous
one while the workers encode (``FileCommits`` lands a batch once the next is sealed, so the
workers always have the next batch queued). Right before a batch's commit the parent stores its
vectors in the encoder's embedding cache (:mod:`rag.core.embed_cache`) and commits exactly as
with one worker: ``Pipeline.index`` with the file cursor of that batch, one writer, batches in
file order, so a killed run resumes the same way and the index is the same (each text's vector is
the same fp32 computation; only the batch it shares a forward pass with differs, which moves a
vector by float reassociation, ~1e-7).

Without a configured cache the run uses a temporary one, removed at the end. Workers start
with ``spawn`` (no inherited torch or tokenizer threads) and load the model once each. A worker
exits within a second of its parent's death (:func:`exit_with_parent`): a ``rag index`` killed by
``SIGTERM``/``SIGKILL`` (a supervisor, an OOM kill) leaves no orphan encoding a slice for minutes.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing as mp
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import numpy as np

from rag.core.errors import ConfigError
from rag.core.types import Document

_ENCODERS: dict[str, Any] = {}  # per worker process: config JSON -> loaded encoder


def _encoder(config: dict[str, Any]) -> Any:
    from rag.core.nodes import Node

    key = json.dumps(config, sort_keys=True)
    if key not in _ENCODERS:
        _ENCODERS[key] = Node.from_config({**config, "cache": None}).load()
    return _ENCODERS[key]


def encode_slice(config: dict[str, Any], texts: list[str]) -> np.ndarray:
    """Vectors ``(len(texts), H)`` of already-prefixed ``texts`` by the encoder ``config``
    (built and loaded once per process; no cache)."""
    return np.asarray(_encoder(config)._encode(texts), dtype=np.float32)


def start_worker(parent: int, configs: list[dict[str, Any]]) -> None:
    """Worker initializer: exit with the parent (:func:`exit_with_parent`), then load the
    encoders, so the workers import torch and read the weights while the parent is still
    reading and chunking files (not after the first batch is sealed)."""
    exit_with_parent(parent)
    for config in configs:
        try:
            _encoder(config)
        except Exception:  # noqa: BLE001 (a failing initializer breaks the whole pool with no
            pass  # message: the first encode_slice raises the error itself, e.g. weights offline)


def exit_with_parent(parent: int, every_s: float = 0.5) -> None:
    """Worker initializer: a daemon thread that ends this process when ``parent`` is gone (the
    process is re-parented, so ``os.getppid()`` changes). A pool only notices a dead parent when
    a worker asks for its next task, after the slice in hand, which can take minutes."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(every_s)
        os._exit(1)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def dense_parts(node: Any) -> list[tuple[Any, str]]:
    """``(encoder, fields)`` of every dense retriever inside ``node`` (a hybrid's children)."""
    from rag.core.encoders import TransformerEncoder

    out: list[tuple[Any, str]] = []
    enc = getattr(node, "encoder", None)
    if isinstance(enc, TransformerEncoder):
        out.append((enc, getattr(node, "fields", "title+text")))
    for child in getattr(node, "retrievers", None) or []:
        out.extend(dense_parts(child))
    return out


class EncodePool:
    """``workers`` processes that fill the dense encoders' caches before a commit."""

    def __init__(self, retriever: Any, workers: int) -> None:
        if workers < 1:
            raise ConfigError(f"--workers must be >= 1, got {workers}")
        self.parts = dense_parts(retriever)
        self.workers = workers
        configs = [enc.to_config() for enc, _ in self.parts]
        self.pool = ProcessPoolExecutor(
            workers, mp_context=mp.get_context("spawn"),
            initializer=start_worker, initargs=(os.getpid(), configs),
        )
        for _ in range(workers):  # start every worker now (a pool spawns them on demand)
            self.pool.submit(os.getpid)

    def ahead(self, docs: Sequence[Document]) -> Callable[[], None]:
        """Start encoding the texts of ``docs`` that no cache holds yet, in the workers, and
        return ``ready()``: it waits for their vectors and stores them in the caches (called
        right before the batch's commit)."""
        from rag.core.embed_cache import cache_for

        jobs = []
        for enc, fields in self.parts:
            cache = cache_for(enc)
            if cache is None:
                continue
            texts = [
                enc.document_prefix + (d.full_text if fields == "title+text" else d.text)
                for d in docs
            ]
            todo = cache.missing(texts)
            if todo:
                jobs.append((cache, todo, self._start(enc, todo)))

        def ready() -> None:
            for cache, todo, wait in jobs:
                cache.put(todo, wait())

        return ready

    def _start(self, enc: Any, texts: list[str]) -> Callable[[], np.ndarray]:
        n = min(self.workers, len(texts))
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        slices = [order[w::n] for w in range(n)]  # interleaved by length: balanced work
        cfg = enc.to_config()
        futures = [self.pool.submit(encode_slice, cfg, [texts[i] for i in s]) for s in slices]

        def wait() -> np.ndarray:
            out = np.zeros((len(texts), enc.dim), dtype=np.float32)
            for s, f in zip(slices, futures, strict=True):
                out[s] = f.result()
            return out

        return wait

    def close(self) -> None:
        self.pool.shutdown(cancel_futures=True)


class NoPool:
    """One worker: the commit encodes in this process (no batch encoded ahead)."""

    ahead = None


@contextlib.contextmanager
def encode_pool(retriever: Any, workers: int) -> Iterator[EncodePool | NoPool]:
    """An :class:`EncodePool` for ``workers > 1`` with a dense part (else a :class:`NoPool`),
    and a temporary embedding cache for the run when none is configured."""
    from rag.core.embed_cache import default_root, set_default

    if workers < 1:
        raise ConfigError(f"--workers must be >= 1, got {workers}")
    if workers == 1 or not dense_parts(retriever):
        yield NoPool()
        return
    tmp = None
    if default_root() is None:
        tmp = tempfile.mkdtemp(prefix="ragnodes-workers-")
        set_default(tmp)
    pool = EncodePool(retriever, workers)
    try:
        yield pool
    finally:
        pool.close()
        if tmp is not None:
            set_default(None)
            shutil.rmtree(tmp, ignore_errors=True)
