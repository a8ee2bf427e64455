"""``rag index``: batched, resumable ingestion into an index folder; ``--append``, ``--delete``,
``--overwrite`` and ``--repair``.

Each batch is one commit that also records how many records of the source are in (the cursor),
so an interrupted ``rag index`` run again resumes after its last committed batch instead of
starting over, and never indexes a record twice.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from rag.core.errors import ConfigError, IndexCorruptError
from rag.core.types import Document
from rag.index.files import file_digest
from rag.index.folder import MANIFEST, IndexFolder, is_index

DEFAULT_BATCH = 10_000


def source_key(paths: Sequence[str | os.PathLike[str]]) -> str:
    return "|".join(str(Path(p).resolve()) for p in paths)


def ingest(
    out: str | os.PathLike[str],
    docs: Sequence[Document],
    make_pipeline: Callable[[], Any],
    source: str,
    append: bool = False,
    overwrite: bool = False,
    batch_size: int = DEFAULT_BATCH,
    log: Callable[[str], None] = print,
) -> Any:
    """Index ``docs`` into the folder ``out`` in committed batches; returns the pipeline.

    A folder that already holds an index is resumed when its cursor for ``source`` is short of
    ``len(docs)``; otherwise it needs ``append`` (add to it) or ``overwrite`` (replace it)."""
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
    from rag.pipeline import Pipeline

    pipe = Pipeline.open(out)
    try:
        return pipe.delete(list(ids))
    finally:
        pipe.close()


def repair(path: str | os.PathLike[str], log: Callable[[str], None] = print) -> int:
    """Rebuild an index from the document segments that still verify: damaged segments' documents
    are dropped (and counted), every retriever structure is rebuilt. Returns documents kept."""
    from rag.core.nodes import Node
    from rag.index.docstore import DocumentStore
    from rag.pipeline import Pipeline

    folder = IndexFolder(path)
    body = folder.read_manifest()  # a damaged manifest cannot be repaired: it says so
    if body is None:
        raise ConfigError(f"{str(path)!r} has no {MANIFEST}; nothing to repair, re-ingest")
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
