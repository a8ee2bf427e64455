"""In-memory token store: every document's token vectors in one matrix plus row offsets.

Layout (also on disk): ``tokens.npy (T, D)`` float16 (default) or float32, ``offsets.npy (N + 1,)``
int64, and ``store.json`` with the document ids and payloads. Saved atomically (temp file +
rename, the manifest last) and loaded with ``mmap_mode="r"``, ``allow_pickle=False``, so a large
index is paged in by the OS instead of read up front.

In an index folder (:mod:`rag.index`) the store is append segments instead, like the dense
vectors (:mod:`retrievers.stores.segments`): :meth:`TokenStore.commit` writes the documents added
since the previous commit as one packed file (tokens, offsets, ids, payloads), named with its size
and sha256 in the manifest, and records deleted rows of older segments as tombstones; past
``MERGE_AT`` segments, or when more rows are dead than live, it rewrites the live rows as one.
:meth:`TokenStore.open` serves a single clean segment memory-mapped as it is.

>>> import numpy as np
>>> s = TokenStore(dtype="float32")
>>> s.add(["a", "b"], [np.eye(2), np.ones((1, 2)) / 2 ** 0.5], [{}, {}])
>>> [(i, round(x, 3)) for i, x in s.search([np.eye(2)], k=2)[0]]
[('a', 2.0), ('b', 1.414)]
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from rag.errors import ConfigError, DataError
from rag.index.files import write_array
from rag.nodes import Node
from rag.persist import atomic_write_text
from retrievers.kernels.maxsim import MODES, PackedTokens
from retrievers.stores.exact import topk_rows

DTYPES = ("float16", "float32")
MERGE_AT = 8  # token segments before a commit rewrites the live rows as one


def _save_npy(path: Path, array: np.ndarray) -> None:
    write_array(path, array)  # the one writer (rag.index.files): temp, fsync, rename


class TokenStore(Node):
    """Token vectors of many documents, searched by exact (brute-force) MaxSim.

    Args:
        dtype: ``float16`` (default, half the bytes; scores are computed in float32) or
            ``float32``.
        kernel: how MaxSim reads the tokens (:mod:`retrievers.kernels.maxsim`): ``float32``
            (default, exact; a float32 copy is made once, on the first search), ``bf16`` (fast
            mode, approximate scores) or ``stream`` (no copy, each call converts: slow).
    """

    name: ClassVar[str] = "token_store"
    kind: ClassVar[str] = "store"

    def __init__(self, dtype: str = "float16", kernel: str = "float32") -> None:
        if dtype not in DTYPES:
            raise ConfigError(f"dtype must be one of {DTYPES}, got {dtype!r}")
        if kernel not in MODES:
            raise ConfigError(f"kernel must be one of {MODES}, got {kernel!r}")
        self.dtype = dtype
        self.kernel = kernel
        self._packed: PackedTokens | None = None
        self._ids: list[str] = []
        self._row: dict[str, int] = {}
        self._payloads: list[dict[str, Any]] = []
        self._tokens: np.ndarray | None = None
        self._offsets = np.zeros(1, dtype=np.int64)
        self._pending: list[np.ndarray] = []
        # committed segments (rag.index): [{"name", "n", "deleted": set, "layout"}], where each
        # committed id sits, and the ids added since the last commit
        self._segs: list[dict[str, Any]] = []
        self._seg_where: dict[str, tuple[int, int]] = {}
        self._seg_new: dict[str, None] = {}

    # -- writing --------------------------------------------------------------------------------
    def count(self) -> int:
        return len(self._ids)

    def add(
        self, ids: Sequence[str], vectors: Sequence[np.ndarray], payloads: Sequence[dict[str, Any]]
    ) -> None:
        """Insert (or replace) documents: ``vectors[i]`` is ``(L_i, D)``."""
        if len(vectors) != len(ids) or len(payloads) != len(ids):
            raise ConfigError(
                f"add() needs as many matrices and payloads as ids; got {len(ids)} ids, "
                f"{len(vectors)} matrices, {len(payloads)} payloads"
            )
        dims = {v.shape[1] for v in vectors if np.ndim(v) == 2}
        if (
            any(np.ndim(v) != 2 for v in vectors)
            or len(dims) > 1
            or (dims and self.dim is not None and dims != {self.dim})
        ):
            raise ConfigError(
                f"token matrices must be 2-D with one width; got {sorted(dims)}, "
                f"store width {self.dim}"
            )
        self.delete([i for i in ids if i in self._row])
        self._seg_new.update(dict.fromkeys(ids))
        self._packed = None
        base = len(self._ids)
        for j, i in enumerate(ids):
            self._row[i] = base + j
        self._ids.extend(ids)
        self._payloads.extend(dict(p) for p in payloads)
        lens = np.array([len(v) for v in vectors], dtype=np.int64)
        self._offsets = np.concatenate([self._offsets, self._offsets[-1] + np.cumsum(lens)])
        self._pending.extend(np.asarray(v, dtype=self.dtype) for v in vectors)

    def delete(self, ids: Sequence[str]) -> None:
        for i in ids:
            self._seg_new.pop(i, None)
            if i in self._seg_where:
                k, r = self._seg_where.pop(i)
                self._segs[k]["deleted"].add(r)
        rows = sorted({self._row[i] for i in ids if i in self._row})
        if not rows:
            return
        tokens = self.tokens
        self._packed = None
        keep_doc = np.ones(len(self._ids), dtype=bool)
        keep_doc[rows] = False
        lens = np.diff(self._offsets)
        self._tokens = np.ascontiguousarray(tokens[np.repeat(keep_doc, lens)])
        self._offsets = np.concatenate([[0], np.cumsum(lens[keep_doc])]).astype(np.int64)
        self._ids = [i for i, k in zip(self._ids, keep_doc, strict=True) if k]
        self._payloads = [p for p, k in zip(self._payloads, keep_doc, strict=True) if k]
        self._row = {i: r for r, i in enumerate(self._ids)}

    # -- reading --------------------------------------------------------------------------------
    @property
    def dim(self) -> int | None:
        if self._tokens is not None and self._tokens.ndim == 2 and len(self._tokens):
            return int(self._tokens.shape[1])
        return int(self._pending[0].shape[1]) if self._pending else None

    @property
    def tokens(self) -> np.ndarray:
        """All token vectors ``(T, D)`` (pending additions are concatenated on first read)."""
        if self._pending:
            parts = [self._tokens] if self._tokens is not None and len(self._tokens) else []
            self._tokens = np.concatenate([np.asarray(p) for p in parts] + self._pending)
            self._pending = []
        if self._tokens is None:
            return np.zeros((0, self.dim or 0), dtype=self.dtype)
        return self._tokens

    @property
    def nbytes(self) -> int:
        """Bytes of the token matrix and offsets (what the index costs in memory or on disk)."""
        return int(self.tokens.nbytes + self._offsets.nbytes)

    def get(self, ids: Sequence[str]) -> list[np.ndarray]:
        """The float32 token matrices of ``ids``."""
        t = self.tokens
        rows = [self._row[i] for i in ids]
        return [np.asarray(t[self._offsets[r] : self._offsets[r + 1]], np.float32) for r in rows]

    def packed(self) -> PackedTokens:
        """The MaxSim kernel's view of the tokens (built once after each change)."""
        if self._packed is None:
            self._packed = PackedTokens(self.tokens, self._offsets, self.kernel)
        return self._packed

    def score(self, query: np.ndarray, ids: Sequence[str]) -> np.ndarray:
        """MaxSim of one query ``(Lq, D)`` against the documents ``ids`` -> ``(len(ids),)``."""
        if not len(ids):
            return np.zeros(0, dtype=np.float32)
        rows = [self._row[i] for i in ids]
        return self.packed().score_rows(np.asarray(query, dtype=np.float32), rows)

    def search(
        self, queries: Sequence[np.ndarray], k: int, allowed: Sequence[str] | None = None
    ) -> list[list[tuple[str, float]]]:
        """Brute-force top-``k`` by exact MaxSim over every document (or only ``allowed``)."""
        if not self._ids or not len(queries):
            return [[] for _ in queries]
        q = np.concatenate([np.asarray(x, dtype=np.float32) for x in queries])
        q_offsets = np.concatenate([[0], np.cumsum([len(x) for x in queries])])
        scores = self.packed().scores(q, q_offsets)
        if allowed is not None:
            mask = np.zeros(len(self._ids), dtype=bool)
            mask[[self._row[i] for i in allowed if i in self._row]] = True
            scores[:, ~mask] = -np.inf
        idx, vals = topk_rows(scores, k)
        return [
            [(self._ids[j], float(v)) for j, v in zip(ri, rv, strict=True) if np.isfinite(v)]
            for ri, rv in zip(idx, vals, strict=True)
        ]

    # -- persistence ----------------------------------------------------------------------------
    def save(self, path: Path) -> None:
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        _save_npy(path / "tokens.npy", self.tokens)
        _save_npy(path / "offsets.npy", self._offsets)
        manifest = {
            "ids": self._ids,
            "payloads": self._payloads,
            "dtype": self.dtype,
            "dim": self.dim,
        }
        atomic_write_text(path / "store.json", json.dumps(manifest))

    def restore(self, path: Path) -> None:
        path = Path(path)
        try:
            manifest = json.loads((path / "store.json").read_text(encoding="utf-8"))
            tokens = np.load(path / "tokens.npy", mmap_mode="r", allow_pickle=False)
            offsets = np.load(path / "offsets.npy", allow_pickle=False)
        except FileNotFoundError as e:
            raise DataError(f"incomplete token store at {path}: {e.filename} is missing") from None
        if len(offsets) != len(manifest["ids"]) + 1 or int(offsets[-1]) != len(tokens):
            raise DataError(
                f"{path}: {len(manifest['ids'])} ids, {len(offsets)} offsets and {len(tokens)} "
                "token rows do not agree; the index is corrupt, rebuild it"
            )
        if manifest["dtype"] != self.dtype:
            raise DataError(f"{path} holds {manifest['dtype']} tokens but dtype={self.dtype!r}")
        self._tokens, self._offsets, self._pending = tokens, offsets.astype(np.int64), []
        self._packed = None
        self._ids, self._payloads = list(manifest["ids"]), list(manifest["payloads"])
        self._row = {i: r for r, i in enumerate(self._ids)}

    # -- the index layer: append segments per commit (rag.index) ---------------------------------
    def _rows(self, ids: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """The tokens of ``ids`` stacked ``(T, D)`` in the store's dtype, and their offsets."""
        t = self.tokens
        rows = [self._row[i] for i in ids]
        lens = np.array([self._offsets[r + 1] - self._offsets[r] for r in rows], dtype=np.int64)
        offsets = np.concatenate([[0], np.cumsum(lens)]).astype(np.int64)
        parts = [np.asarray(t[self._offsets[r] : self._offsets[r + 1]]) for r in rows]
        width = self.dim or 0
        tokens = np.concatenate(parts) if parts else np.zeros((0, width), dtype=self.dtype)
        return np.ascontiguousarray(tokens, dtype=self.dtype), offsets

    def commit(self, commit: Any, part: str) -> dict[str, Any]:
        """Write the documents added since the last commit as a segment of ``commit`` (a
        :class:`rag.index.folder.Commit`), keep the older segments; returns the manifest state."""
        dead = sum(len(s["deleted"]) for s in self._segs)
        if (
            len(self._seg_where) + len(self._seg_new) != self.count()  # filled some other way
            or any(not commit.has(f"{s['name']}.tok") for s in self._segs)  # another folder
            or len(self._segs) >= MERGE_AT
            or dead > len(self._seg_where)
        ):
            self._segs, self._seg_where, self._seg_new = [], {}, dict.fromkeys(self._ids)
        for seg in self._segs:
            commit.keep(f"{seg['name']}.tok")
        if self._seg_new:
            ids = list(self._seg_new)
            tokens, offsets = self._rows(ids)
            name = commit.new_name(part)
            layout = commit.put_pack(f"{name}.tok", {
                "tokens": tokens,
                "offsets": offsets,
                "ids": json.dumps(ids).encode("utf-8"),
                "payloads": json.dumps([self._payloads[self._row[i]] for i in ids]).encode(),
            })
            self._segs.append({"name": name, "n": len(ids), "deleted": set(), "layout": layout})
            for r, i in enumerate(ids):
                self._seg_where[i] = (len(self._segs) - 1, r)
            self._seg_new = {}
        return {
            "dtype": self.dtype,
            "dim": self.dim,
            "segments": [{**s, "deleted": sorted(s["deleted"])} for s in self._segs],
        }

    def open(self, folder: Path, state: dict[str, Any]) -> None:
        """Open the segments a manifest's state names (files already verified by the index)."""
        from rag.errors import IndexCorruptError
        from rag.index.folder import read_pack, repair_hint

        if state["dtype"] != self.dtype:
            raise DataError(f"{folder} holds {state['dtype']} tokens but dtype={self.dtype!r}")
        segs: list[dict[str, Any]] = []
        where: dict[str, tuple[int, int]] = {}
        ids: list[str] = []
        payloads: list[dict[str, Any]] = []
        tokens: list[Any] = []
        lens: list[np.ndarray] = []
        for k, s in enumerate(state["segments"]):
            file = f"{s['name']}.tok"
            pack = read_pack(Path(folder) / file, s["layout"])
            seg_ids = json.loads(bytes(pack["ids"]))
            seg_payloads = json.loads(bytes(pack["payloads"]))
            offsets = np.asarray(pack["offsets"], dtype=np.int64)
            t = pack["tokens"]
            if (len(seg_ids) != s["n"] or len(seg_payloads) != s["n"] or len(offsets) != s["n"] + 1
                    or int(offsets[-1]) != len(t) or np.any(np.diff(offsets) < 0)):
                raise IndexCorruptError(
                    f"index {str(folder)!r}: file {file} does not agree with the manifest "
                    f"({len(seg_ids)} ids, {len(offsets)} offsets, {len(t)} token rows for "
                    f"{s['n']} documents); {repair_hint(Path(folder))}"
                )
            dead = set(s["deleted"])
            segs.append({**s, "deleted": dead})
            live = [r for r in range(s["n"]) if r not in dead]
            for r in live:
                where[seg_ids[r]] = (k, r)
            ids.extend(seg_ids[r] for r in live)
            payloads.extend(seg_payloads[r] for r in live)
            seg_lens = np.diff(offsets)
            if len(live) == s["n"]:
                tokens.append(t)
            else:
                keep = np.repeat(np.isin(np.arange(s["n"]), live), seg_lens)
                tokens.append(np.asarray(t)[keep])
            lens.append(seg_lens[live])
        self._segs, self._seg_where, self._seg_new = segs, where, {}
        self._ids, self._payloads = ids, payloads
        self._row = {i: r for r, i in enumerate(ids)}
        all_lens = np.concatenate(lens) if lens else np.zeros(0, dtype=np.int64)
        self._offsets = np.concatenate([[0], np.cumsum(all_lens)]).astype(np.int64)
        if len(tokens) == 1:
            self._tokens = tokens[0]  # memory-mapped, as written
        else:
            self._tokens = np.concatenate([np.asarray(x) for x in tokens]) if tokens else None
        self._pending, self._packed = [], None
