"""The stages of ``rag index --engine ray`` that run on Ray workers (:mod:`rag.ingest.ray_engine`
drives them): load + chunk (a CPU task per block of files) and embed (an actor pool, one
encoder per actor). Nothing here imports Ray; every function is plain Python over Ray Data's
``numpy`` batches (``{column: array}``), so it runs in one process too.

Rows between the stages, one per chunk (or per file that gave none, or was skipped):

======== ====================================================================================
column   value
======== ====================================================================================
kind     ``chunk`` | ``empty`` (a file with no chunks) | ``skip`` (a bad file; ``reason``)
source   the file as written on the command line (the file cursor's key)
doc      the chunk as :class:`~rag.core.types.Document` JSON (``""`` for ``empty`` / ``skip``)
reason   why a file was skipped (``""`` otherwise)
v0, v1.. after the embed stage: one float32 vector per document encoder of the retriever
======== ====================================================================================

The chunks are made by the very code of ``rag index`` (:func:`rag.ingest.loaders.load_file`,
the retriever's :class:`~rag.ingest.splitter.Chunker`, ``_chunks_of``), so their ids, texts and
metadata are the same; the vectors by the same encoder config (:meth:`Node.from_config`).
"""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Any

import numpy as np

from rag.core.types import Document

KINDS = ("chunk", "empty", "skip")


@lru_cache(maxsize=4)
def _chunker(config: str) -> Any:
    """One loaded chunker per config and worker process (Ray reuses a process across tasks)."""
    from rag.core.nodes import Node

    return Node.from_config(json.loads(config)).load()


def document_text(d: Document, fields: str) -> str:
    """What a dense retriever embeds of ``d`` (``DenseRetriever._add``, ``QdrantHybrid._text``)."""
    return d.full_text if fields == "title+text" else d.text


def load_and_chunk(
    batch: dict[str, np.ndarray],
    chunker: str,
    chunk_records: bool,
    csv_columns: Any = None,
    progress: Any = None,
) -> dict[str, np.ndarray]:
    """Files (columns ``path``, ``source``, ``doc_id``, ``sha256``) -> chunk rows. A file that
    cannot be read becomes one ``skip`` row with the reason (never an exception: the run goes
    on)."""
    from rag.ingest.indexing import _chunks_of
    from rag.ingest.loaders import CsvColumns, SkipFile, load_file

    cols: CsvColumns | None = csv_columns
    split = _chunker(chunker)
    rows: dict[str, list[str]] = {"kind": [], "source": [], "doc": [], "reason": []}

    def emit(kind: str, source: str, doc: str = "", reason: str = "") -> None:
        rows["kind"].append(kind)
        rows["source"].append(source)
        rows["doc"].append(doc)
        rows["reason"].append(reason)

    n_chunks = 0
    for path, source, doc_id, digest in zip(
        batch["path"], batch["source"], batch["doc_id"], batch["sha256"], strict=True
    ):
        source = str(source)
        try:
            docs = load_file(str(path), source, str(doc_id), cols)
        except (SkipFile, OSError) as e:
            emit("skip", source, reason=str(e))
            continue
        parts: list[Document] = []
        for d in docs:
            d.metadata["sha256"] = str(digest)
            parts.extend(_chunks_of(d, split, chunk_records, None))
        if not parts:
            emit("empty", source)
        for c in parts:
            emit("chunk", source, c.model_dump_json())
        n_chunks += len(parts)
    if progress is not None:  # fire and forget: a counter actor
        progress.add.remote(files=len(batch["path"]), chunks=n_chunks)
    return {k: np.array(v, dtype=object) for k, v in rows.items()}


class Embedder:
    """One actor of the embed pool: the retriever's document encoders, loaded once.

    ``encoders`` is ``[(encoder config JSON, fields)]`` (:func:`rag.ingest.ray_engine.
    document_encoders`); the batch gets one column ``v<i>`` per encoder, ``(B, H_i)`` float32
    (zeros for rows that are not chunks). Any encoder node with ``encode(texts,
    kind="document")`` works here: the packaged MiniLM on CPU, a GPU when the actor is given
    ``num_gpus`` (``device="auto"`` picks CUDA), or a remote OpenAI-compatible embedding
    endpoint (the encoder then only makes HTTP calls)."""

    def __init__(
        self, encoders: list[tuple[str, str]], threads: int = 1, progress: Any = None
    ) -> None:
        from rag.core.nodes import Node

        try:
            import torch

            torch.set_num_threads(max(1, threads))
        except ImportError:  # a remote encoder needs no torch
            pass
        self.encoders: list[tuple[Any, str]] = [
            (Node.from_config(json.loads(c)), f) for c, f in encoders
        ]
        for enc, _ in self.encoders:
            enc.load()
        self.progress = progress

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        kinds = [str(k) for k in batch["kind"]]
        rows = [i for i, k in enumerate(kinds) if k == "chunk"]
        docs = [Document.model_validate_json(str(batch["doc"][i])) for i in rows]
        out = dict(batch)
        for n, (enc, fields) in enumerate(self.encoders):
            got = enc.encode([document_text(d, fields) for d in docs], kind="document")
            vecs = np.zeros((len(kinds), got.shape[1] if len(rows) else enc.dim), np.float32)
            vecs[rows] = got
            out[f"v{n}"] = vecs
        if self.progress is not None:
            self.progress.add.remote(embedded=len(rows))
        return out


class Progress:
    """Counters the stages report to (a Ray actor of no CPU; the driver reads it)."""

    def __init__(self) -> None:
        self.counts = {"files": 0, "chunks": 0, "embedded": 0}

    def add(self, **counts: int) -> None:
        for k, v in counts.items():
            self.counts[k] = self.counts.get(k, 0) + int(v)

    def get(self) -> dict[str, int]:
        return dict(self.counts)
