"""The document store of an index folder: every document (text, title, metadata) stored once.

Documents live in immutable segments, one file per commit (``<seg>.docs``) that packs the documents
as JSON lines, their ``(n + 1,)`` int64 byte offsets and the ids (layout in the manifest).
A deleted or replaced document is a tombstone (its row number, kept in the manifest) until
:meth:`DocumentStore.compact` rewrites the live rows. Reading a document reads its bytes from the
segment file (``pread``, no memory map), so a serving process holds only the id table per
document, not the documents (Lucene's stored fields: immutable segments plus live-docs bitsets),
and a segment truncated or damaged under a running server is an
:class:`~rag.core.errors.IndexCorruptError` naming the file for that request, never a SIGBUS.

>>> store = DocumentStore()
>>> store["a"] = Document(id="a", text="cats purr")
>>> store["a"].text
'cats purr'
"""

from __future__ import annotations

import json
from collections.abc import Iterator, MutableMapping
from pathlib import Path
from typing import Any

import numpy as np

from rag.core.types import Document


class DocSegment:
    """One committed segment: ids, the mmap'd bytes and offsets, and the deleted rows."""

    def __init__(
        self, name: str, ids: list[str], data: Any, offsets: np.ndarray, deleted: set[int]
    ) -> None:
        self.name, self.ids, self.data, self.offsets = name, ids, data, offsets
        self.deleted = set(deleted)
        self.layout: dict[str, Any] = {}  # where each array sits in the segment file

    def get(self, row: int) -> Document:
        raw = bytes(self.data[int(self.offsets[row]) : int(self.offsets[row + 1])])
        try:
            fields = json.loads(raw)
            if not isinstance(fields, dict) or "id" not in fields:
                raise ValueError("not a document")
        except ValueError:  # bytes changed after the open verified them
            from rag.core.errors import IndexCorruptError

            folder = getattr(self.data, "path", Path("?")).parent
            raise IndexCorruptError(
                f"index {str(folder)!r}: file {self.name}.docs holds a damaged document at row "
                f"{row}; run `rag index --repair {folder}` or re-ingest the corpus"
            ) from None
        return Document.model_construct(**fields)


def encode_documents(docs: list[Document]) -> tuple[bytes, np.ndarray]:
    """The segment bytes and ``(n + 1,)`` offsets of ``docs``."""
    parts = [(d.model_dump_json() + "\n").encode("utf-8") for d in docs]
    offsets = np.zeros(len(parts) + 1, dtype=np.int64)
    np.cumsum([len(p) for p in parts], out=offsets[1:])
    return b"".join(parts), offsets


class DocumentStore(MutableMapping[str, Document]):
    """A mapping id -> :class:`Document` over committed segments plus pending (uncommitted)
    documents; iteration follows commit order, as a dict follows insertion order."""

    def __init__(self) -> None:
        self.segments: list[DocSegment] = []
        self._where: dict[str, tuple[int, int]] = {}  # id -> (segment, row) of the live copy
        self._pending: dict[str, Document] = {}
        self._dirty_deletes = False

    # -- mapping --------------------------------------------------------------------------------
    def __getitem__(self, doc_id: str) -> Document:
        if doc_id in self._pending:
            return self._pending[doc_id]
        s, r = self._where[doc_id]
        return self.segments[s].get(r)

    def __setitem__(self, doc_id: str, doc: Document) -> None:
        if doc_id in self._where:
            self._tombstone(doc_id)
        self._pending[doc_id] = doc

    def __delitem__(self, doc_id: str) -> None:
        if doc_id in self._pending:
            del self._pending[doc_id]
        elif doc_id in self._where:
            self._tombstone(doc_id)
        else:
            raise KeyError(doc_id)

    def _tombstone(self, doc_id: str) -> None:
        s, r = self._where.pop(doc_id)
        self.segments[s].deleted.add(r)
        self._dirty_deletes = True

    def __contains__(self, doc_id: object) -> bool:
        return doc_id in self._pending or doc_id in self._where

    def __len__(self) -> int:
        return len(self._where) + len(self._pending)

    def __iter__(self) -> Iterator[str]:
        for seg in self.segments:
            for r, i in enumerate(seg.ids):
                if r not in seg.deleted:
                    yield i
        yield from list(self._pending)

    # -- persistence ----------------------------------------------------------------------------
    @property
    def dirty(self) -> bool:
        return bool(self._pending) or self._dirty_deletes

    def commit(self, commit: Any) -> dict[str, Any]:
        """Write pending documents as a new segment through ``commit`` (a
        :class:`rag.index.folder.Commit`); returns the JSON state for the manifest."""
        out = []
        for seg in self.segments:
            commit.keep(f"{seg.name}.docs")
        if self._pending:
            name = commit.new_name("docs")
            docs = list(self._pending.values())
            data, offsets = encode_documents(docs)
            ids = [d.id for d in docs]
            layout = commit.put_pack(f"{name}.docs", {
                "data": data, "offsets": offsets, "ids": json.dumps(ids).encode("utf-8")})
            seg = DocSegment(name, ids, np.frombuffer(data, dtype=np.uint8), offsets, set())
            seg.layout = layout
            self.segments.append(seg)
            for r, i in enumerate(ids):
                self._where[i] = (len(self.segments) - 1, r)
            self._pending.clear()
        for seg in self.segments:
            out.append({"name": seg.name, "n": len(seg.ids), "deleted": sorted(seg.deleted),
                        "layout": seg.layout})
        self._dirty_deletes = False
        return {"segments": out}

    @classmethod
    def open(cls, folder: Path, state: dict[str, Any]) -> DocumentStore:
        """The store described by a manifest's ``docs`` state (files already verified)."""
        from rag.core.errors import IndexCorruptError
        from rag.index.folder import read_pack

        store = cls()
        for s in state["segments"]:
            name = s["name"]
            parts = read_pack(folder / f"{name}.docs", s["layout"], lazy=("data",))
            data, offsets = parts["data"], np.asarray(parts["offsets"])
            ids = json.loads(bytes(parts["ids"]))
            size = len(data)
            if len(ids) != s["n"] or len(offsets) != s["n"] + 1 or int(offsets[-1]) != size:
                raise IndexCorruptError(
                    f"index {str(folder)!r}: segment {name} does not agree with the manifest "
                    f"({len(ids)} ids, {len(offsets)} offsets, {size} bytes for {s['n']} "
                    f"documents); run `rag index --repair {folder}` or re-ingest the corpus"
                )
            seg = DocSegment(name, ids, data, offsets, set(s["deleted"]))
            seg.layout = s["layout"]
            store.segments.append(seg)
            k = len(store.segments) - 1
            for r, i in enumerate(ids):
                if r not in seg.deleted:
                    store._where[i] = (k, r)
        return store

    def compact(self) -> None:
        """Forget committed segments: every live document becomes pending, so the next commit
        writes them as one segment and the old files are removed after it."""
        docs = {i: self[i] for i in self}
        self.segments, self._where, self._pending = [], {}, docs
        self._dirty_deletes = True
