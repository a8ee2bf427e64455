"""Durable, resumable indexing: immutable segments plus one atomically replaced manifest.

Layout of an index folder::

    manifest.json        {"seq", "dim", "segments": [{"seq", "n"}], "deleted": {id: seq},
                          "cursors": {source: records consumed}}
    seg-000001.npy       vectors (n, D) float32 of one committed batch
    seg-000001.json      {"ids": [...], "payloads": [...]} of that batch

A batch is durable once :meth:`DurableIndex.add` returns: the segment files are written and
fsynced first, then the manifest that names them replaces the old one in one ``rename``
(:func:`rag.index.persist.atomic_write_text`), then the folder is fsynced. A crash at any point
leaves either the old manifest (the batch is not acknowledged, its files are orphans removed on the
next open) or the new one; never a half-visible batch. Ids are upserts (the highest ``seq`` wins)
and deletes are tombstones, so add, update and delete by document id are all appends. The source
cursor travels in the same manifest write as the batch, so a resumed ingestion skips exactly the
records already committed. This is the write-ahead/commit-point pattern of Lucene segments +
``segments_N``.

>>> idx = DurableIndex(tmp_path)                                   # doctest: +SKIP
>>> ingest_jsonl("corpus.jsonl", idx, encode, batch_size=256)      # doctest: +SKIP
>>> store = idx.to_store()      # an ExactStore with the live documents
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rag.core.errors import ConfigError, DataError
from rag.index.files import fsync_dir, write_durable
from rag.index.persist import atomic_write_text, iter_jsonl
from retrievers.stores.base import check_batch

MANIFEST = "manifest.json"


def _fsync_dir(path: Path) -> None:
    fsync_dir(path)


def _write_durable(path: Path, data: bytes) -> None:
    write_durable(path, data)  # the index layer's one writer: temp -> fsync -> rename


class DurableIndex:
    """An append-only vector index folder; see the module docstring for the protocol."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        self._manifest = self._read_manifest()
        self._remove_orphans()

    # -- manifest -------------------------------------------------------------------------------
    def _read_manifest(self) -> dict[str, Any]:
        f = self.path / MANIFEST
        if not f.exists():
            return {"seq": 0, "dim": None, "segments": [], "deleted": {}, "cursors": {}}
        try:
            return dict(json.loads(f.read_text(encoding="utf-8")))
        except json.JSONDecodeError as e:  # cannot happen with atomic writes; say so if it does
            raise DataError(f"{f}: corrupt manifest ({e.msg})") from None

    def _commit(self, manifest: dict[str, Any]) -> None:
        atomic_write_text(self.path / MANIFEST, json.dumps(manifest))
        _fsync_dir(self.path)
        self._manifest = manifest

    def _seg(self, seq: int, ext: str) -> Path:
        return self.path / f"seg-{seq:06d}.{ext}"

    def _remove_orphans(self) -> None:
        """Delete segment files no committed manifest names (a crash before the commit)."""
        segs = self._manifest["segments"]
        live = {self._seg(s["seq"], e).name for s in segs for e in ("npy", "json")}
        for p in self.path.glob("seg-*"):
            if p.name not in live:
                p.unlink()
        for pattern in (f".{MANIFEST}.*.tmp", ".seg-*.tmp"):  # a write killed before its rename
            for p in self.path.glob(pattern):
                p.unlink()

    @property
    def seq(self) -> int:
        return int(self._manifest["seq"])

    def cursor(self, source: str) -> int:
        """Records of ``source`` already committed (0 when never seen)."""
        return int(self._manifest["cursors"].get(source, 0))

    # -- writes ---------------------------------------------------------------------------------
    def add(
        self,
        ids: Sequence[str],
        vectors: np.ndarray,
        payloads: Sequence[dict[str, Any]] | None = None,
        cursor: tuple[str, int] | None = None,
    ) -> int:
        """Upsert a batch; returns its ``seq`` once it is durable. ``cursor=(source, n)`` records
        that the first ``n`` records of ``source`` are in the index, in the same commit."""
        payloads = list(payloads) if payloads is not None else [{} for _ in ids]
        vectors = check_batch(ids, vectors, payloads, np.float32)
        if len(set(ids)) != len(ids):
            raise ConfigError("add() got the same id twice in one batch")
        dim = self._manifest["dim"]
        if dim is not None and len(ids) and vectors.shape[1] != dim:
            raise ConfigError(f"vector dim {vectors.shape[1]} != index dim {dim}")
        m = json.loads(json.dumps(self._manifest))
        seq = m["seq"] + 1
        if len(ids):
            import io

            buf = io.BytesIO()
            np.save(buf, vectors, allow_pickle=False)
            _write_durable(self._seg(seq, "npy"), buf.getvalue())
            meta = {"ids": list(ids), "payloads": payloads}
            _write_durable(self._seg(seq, "json"), json.dumps(meta).encode("utf-8"))
            m["segments"].append({"seq": seq, "n": len(ids)})
            m["dim"] = int(vectors.shape[1])
            for i in ids:  # a re-added id is live again
                m["deleted"].pop(i, None)
        m["seq"] = seq
        if cursor is not None:
            m["cursors"][cursor[0]] = int(cursor[1])
        self._commit(m)
        return seq

    def delete(self, ids: Sequence[str], cursor: tuple[str, int] | None = None) -> int:
        """Tombstone ``ids`` (durable when it returns)."""
        m = json.loads(json.dumps(self._manifest))
        m["seq"] += 1
        for i in ids:
            m["deleted"][i] = m["seq"]
        if cursor is not None:
            m["cursors"][cursor[0]] = int(cursor[1])
        self._commit(m)
        return int(m["seq"])

    # -- reads ----------------------------------------------------------------------------------
    def _segments(self) -> Iterator[tuple[int, list[str], list[dict], np.ndarray]]:
        for s in self._manifest["segments"]:
            try:
                meta = json.loads(self._seg(s["seq"], "json").read_text(encoding="utf-8"))
                vecs = np.load(self._seg(s["seq"], "npy"), mmap_mode="r", allow_pickle=False)
            except FileNotFoundError as e:
                raise DataError(
                    f"{self.path}: committed segment {e.filename} is missing"
                ) from None
            if len(vecs) != s["n"] or len(meta["ids"]) != s["n"]:
                raise DataError(
                    f"{self.path}: segment {s['seq']} has {len(vecs)} rows, not {s['n']}"
                )
            yield s["seq"], meta["ids"], meta["payloads"], vecs

    def live(self) -> tuple[list[str], np.ndarray, list[dict[str, Any]]]:
        """The live documents: the newest version of every id not deleted after it, in
        commit order. Returns ``(ids, vectors (N, D), payloads)``."""
        latest: dict[str, tuple[int, int]] = {}
        segs = list(self._segments())
        for k, (_, ids, _, _) in enumerate(segs):
            for r, i in enumerate(ids):
                latest[i] = (k, r)
        deleted = self._manifest["deleted"]
        keep = sorted(
            (k, r, i) for i, (k, r) in latest.items() if deleted.get(i, -1) < segs[k][0]
        )
        dim = self._manifest["dim"] or 0
        vecs = np.zeros((len(keep), dim), dtype=np.float32)
        for n, (k, r, _) in enumerate(keep):
            vecs[n] = segs[k][3][r]
        return [i for _, _, i in keep], vecs, [segs[k][2][r] for k, r, _ in keep]

    def to_store(self, store: Any = None) -> Any:
        """Load the live documents into ``store`` (default: a new ``ExactStore``)."""
        from retrievers.stores.exact import ExactStore

        store = store if store is not None else ExactStore()
        ids, vecs, payloads = self.live()
        if ids:
            store.add(ids, vecs, payloads)
        return store

    def compact(self) -> None:
        """Rewrite the live documents as one segment and drop the old ones."""
        ids, vecs, payloads = self.live()
        old = [s["seq"] for s in self._manifest["segments"]]
        m = json.loads(json.dumps(self._manifest))
        m["segments"], m["deleted"] = [], {}
        seq = m["seq"] + 1
        if ids:
            import io

            buf = io.BytesIO()
            np.save(buf, vecs, allow_pickle=False)
            _write_durable(self._seg(seq, "npy"), buf.getvalue())
            meta = {"ids": ids, "payloads": payloads}
            _write_durable(self._seg(seq, "json"), json.dumps(meta).encode("utf-8"))
            m["segments"] = [{"seq": seq, "n": len(ids)}]
        m["seq"] = seq
        self._commit(m)
        for s in old:
            for ext in ("npy", "json"):
                self._seg(s, ext).unlink(missing_ok=True)


def ingest_jsonl(
    source: str | os.PathLike[str],
    index: DurableIndex,
    encode: Callable[[list[str]], np.ndarray],
    batch_size: int = 256,
    on_commit: Callable[[int, list[str]], None] | None = None,
) -> int:
    """Ingest a corpus JSONL (``_id``/``id``, ``text``, ``title``?, ``metadata``?) in batches,
    resuming after the records a previous (possibly killed) run committed.

    ``encode(texts) -> (B, D)`` embeds ``title + " " + text``. ``on_commit(seq, ids)`` is called
    after each batch is durable: the place to acknowledge it. Returns the records consumed.
    """
    if batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
    key = str(Path(source).resolve())
    done = index.cursor(key)
    batch: list[dict[str, Any]] = []
    in_batch: set[str] = set()
    n = 0

    def flush(consumed: int) -> None:
        ids = [str(r.get("_id", r.get("id"))) for r in batch]
        texts = [(str(r.get("title") or "") + " " + str(r["text"])).strip() for r in batch]
        payloads = [{"metadata": r.get("metadata") or {}} for r in batch]
        seq = index.add(ids, encode(texts), payloads, cursor=(key, consumed))
        if on_commit is not None:
            on_commit(seq, ids)
        batch.clear()
        in_batch.clear()

    for lineno, row in iter_jsonl(source):
        n += 1
        if n <= done:
            continue
        if ("_id" not in row and "id" not in row) or "text" not in row:
            raise DataError(f"{source}:{lineno}: a record needs '_id' (or 'id') and 'text'")
        doc_id = str(row.get("_id", row.get("id")))
        if doc_id in in_batch:
            flush(n - 1)  # the same id twice in one batch: the later one must win
        batch.append(row)
        in_batch.add(doc_id)
        if len(batch) >= batch_size:
            flush(n)
    if batch:
        flush(n)
    return n
