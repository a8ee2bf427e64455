"""Vector segments of an index folder: an ``ExactStore``'s rows appended, never rewritten.

A commit writes the vectors added since the previous one as a new segment (``(n, D)`` vectors
and their ids, one packed file) and records deleted rows of older segments as tombstones in the
manifest, so a write costs its own rows, not the index. Opening serves a single clean segment
memory-mapped as it is, and otherwise stacks the live rows (``compact`` via a full save). The
store's payloads (metadata for filters) come from the index's document store, not from a copy.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np


class VectorSegments:
    """Which committed segment and row holds each id, and the ids added since the last commit."""

    def __init__(self) -> None:
        self.segments: list[dict[str, Any]] = []  # {"name", "n", "deleted": set, "layout"}
        self.where: dict[str, tuple[int, int]] = {}
        self.pending: dict[str, None] = {}  # insertion-ordered set

    def add(self, ids: Sequence[str]) -> None:
        self.delete(ids)
        self.pending.update(dict.fromkeys(ids))

    def delete(self, ids: Sequence[str]) -> None:
        for i in ids:
            self.pending.pop(i, None)
            if i in self.where:
                k, r = self.where.pop(i)
                self.segments[k]["deleted"].add(r)

    def commit(self, commit: Any, part: str, store: Any) -> dict[str, Any]:
        if len(self.where) + len(self.pending) != store.count():  # filled some other way
            return self._rewrite(commit, part, store)
        for seg in self.segments:
            if not commit.has(f"{seg['name']}.vec"):  # a store saved to another folder
                return self._rewrite(commit, part, store)
            commit.keep(f"{seg['name']}.vec")
        if self.pending:
            self._write(commit, part, list(self.pending), store)
            self.pending = {}
        return {"segments": [{**s, "deleted": sorted(s["deleted"])} for s in self.segments]}

    def _rewrite(self, commit: Any, part: str, store: Any) -> dict[str, Any]:
        self.segments, self.where, self.pending = [], {}, {}
        if store.count():
            self._write(commit, part, list(store._ids), store)
        return {"segments": [{**s, "deleted": []} for s in self.segments]}

    def _write(self, commit: Any, part: str, ids: list[str], store: Any) -> None:
        name = commit.new_name(part)
        layout = commit.put_pack(f"{name}.vec", {
            "vectors": np.asarray(store.vectors(ids), dtype=np.float32),
            "ids": json.dumps(ids).encode("utf-8"),
        })
        self.segments.append({"name": name, "n": len(ids), "deleted": set(), "layout": layout})
        for r, i in enumerate(ids):
            self.where[i] = (len(self.segments) - 1, r)

    def open(self, folder: Path, state: dict[str, Any], store: Any,
             documents: Mapping[str, Any]) -> None:
        from rag.index.folder import read_pack

        self.segments, self.where, self.pending = [], {}, {}
        ids: list[str] = []
        parts = []
        for k, s in enumerate(state["segments"]):
            pack = read_pack(folder / f"{s['name']}.vec", s["layout"])
            seg_ids = json.loads(bytes(pack["ids"]))
            dead = set(s["deleted"])
            self.segments.append({**s, "deleted": dead})
            live = [r for r in range(s["n"]) if r not in dead]
            for r in live:
                self.where[seg_ids[r]] = (k, r)
            ids.extend(seg_ids[r] for r in live)
            parts.append(pack["vectors"] if len(live) == s["n"] else pack["vectors"][live])
        if not ids:
            return
        vecs = parts[0] if len(parts) == 1 else np.concatenate([np.asarray(p) for p in parts])
        payloads = [{"metadata": documents[i].metadata} for i in ids]
        if store.dtype == "float32" and vecs.dtype == np.float32:
            store.attach(ids, vecs, payloads)  # memory-mapped when one clean segment
        else:
            store.attach(ids, np.asarray(vecs).astype(store.dtype), payloads)
