"""BM25 postings in immutable segments with global statistics, so writes never rebuild.

Each ``index()`` call adds a segment (its documents' term frequencies as a term-major CSC matrix:
``indptr (V + 1,)``, ``rows``, ``tf`` and the document lengths ``dl``); a delete clears a row's
live bit. Scores are computed at query time from the postings and the statistics of the *live*
documents of all segments (``N``, ``avgdl``, ``df``), in the float order bm25s (Lù, 2024) uses when
it precomputes them, so a segmented index scores exactly like one bm25s index built over the same
live documents (tests/nodes/test_bm25_segments.py checks equality). This is Lucene's design:
per-segment postings, collection statistics summed over segments at search time, deletions as
live-docs bitsets, merges by a policy (here: more than ``MAX_SEGMENTS`` segments merge the smaller
ones) or an explicit compaction.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

MAX_SEGMENTS = 10
ARRAYS = ("indptr", "rows", "tf", "dl")


class Segment:
    """Postings of one batch of documents (term-major), their ids and live bits."""

    def __init__(
        self, ids: list[str], terms: list[str], arrays: dict[str, np.ndarray],
        live: np.ndarray | None = None, name: str | None = None,
    ) -> None:
        self.ids, self.terms = ids, terms
        self.col = {t: j for j, t in enumerate(terms)}
        self.indptr, self.rows = arrays["indptr"], arrays["rows"]
        self.tf, self.dl = arrays["tf"], arrays["dl"]
        self.live = np.ones(len(ids), dtype=bool) if live is None else live
        self.name = name  # file stem once committed
        self.layout: dict[str, Any] = {}

    @property
    def n(self) -> int:
        return len(self.ids)

    def postings(self, term: str) -> tuple[np.ndarray, np.ndarray] | None:
        j = self.col.get(term)
        if j is None:
            return None
        a, b = int(self.indptr[j]), int(self.indptr[j + 1])
        return np.asarray(self.rows[a:b]), np.asarray(self.tf[a:b])


def build_segment(ids: list[str], tokens: Sequence[Sequence[str]]) -> Segment:
    """A segment from each document's token list (duplicates are term frequencies)."""
    lens = np.array([len(t) for t in tokens], dtype=np.int64)
    flat = [t for doc in tokens for t in doc]
    if not flat:
        arrays: dict[str, np.ndarray] = {
            "indptr": np.zeros(1, np.int64),
            "rows": np.zeros(0, np.int32),
            "tf": np.zeros(0, np.float32),
            "dl": lens.astype(np.int32),
        }
        return Segment(list(ids), [], arrays)
    terms, tid = np.unique(np.array(flat, dtype=object).astype(str), return_inverse=True)
    row = np.repeat(np.arange(len(ids), dtype=np.int64), lens)
    return _from_triplets(list(ids), terms, tid.astype(np.int64), row, None, lens)


def _from_triplets(
    ids: list[str], terms: np.ndarray, tid: np.ndarray, row: np.ndarray,
    tf: np.ndarray | None, dl: np.ndarray,
) -> Segment:
    """CSC from (term id, row[, tf]) triplets; without ``tf`` each triplet counts once."""
    key = tid * max(len(ids), 1) + row
    if tf is None:
        key, counts = np.unique(key, return_counts=True)
        tf = counts.astype(np.float32)
    else:
        order = np.argsort(key, kind="stable")
        key, tf = key[order], tf[order]
    t, r = key // max(len(ids), 1), key % max(len(ids), 1)
    indptr = np.zeros(len(terms) + 1, dtype=np.int64)
    np.cumsum(np.bincount(t, minlength=len(terms)), out=indptr[1:])
    arrays = {"indptr": indptr, "rows": r.astype(np.int32), "tf": tf.astype(np.float32),
              "dl": np.asarray(dl, dtype=np.int32)}
    return Segment(ids, [str(x) for x in terms], arrays)


def merge(segments: list[Segment]) -> Segment:
    """One segment with the live documents of ``segments``, in their order (no re-tokenizing)."""
    ids: list[str] = []
    tids: list[np.ndarray] = []
    rows: list[np.ndarray] = []
    tfs: list[np.ndarray] = []
    dls: list[np.ndarray] = []
    vocab: list[np.ndarray] = []
    base = 0
    for seg in segments:
        keep = np.flatnonzero(np.asarray(seg.live))
        new_row = np.full(seg.n, -1, dtype=np.int64)
        new_row[keep] = base + np.arange(len(keep))
        cols = np.repeat(np.arange(len(seg.terms)), np.diff(np.asarray(seg.indptr)))
        r = new_row[np.asarray(seg.rows)]
        ok = r >= 0
        tids.append(cols[ok] + sum(len(v) for v in vocab))
        rows.append(r[ok])
        tfs.append(np.asarray(seg.tf)[ok])
        dls.append(np.asarray(seg.dl)[keep])
        vocab.append(np.array(seg.terms, dtype=object))
        ids.extend(seg.ids[i] for i in keep)
        base += len(keep)
    allterms = np.concatenate(vocab).astype(str) if vocab else np.zeros(0, str)
    terms, inv = np.unique(allterms, return_inverse=True)
    tid = inv[np.concatenate(tids)] if tids else np.zeros(0, np.int64)
    return _from_triplets(
        ids, terms, tid.astype(np.int64), np.concatenate(rows) if rows else tid,
        np.concatenate(tfs) if tfs else np.zeros(0, np.float32),
        np.concatenate(dls) if dls else np.zeros(0, np.int32),
    )


# -- scoring: bm25s's formulas and float order -------------------------------------------------
def idf(method: str, df: int, n: int) -> float:
    if method == "robertson":
        return math.log(max((n - df + 0.5) / (df + 0.5), 1))
    if method == "atire":
        return math.log(n / df)
    return math.log(1 + (n - df + 0.5) / (df + 0.5))  # lucene


class SegmentedBM25:
    """Segments + tombstones with query-time global statistics (methods lucene, robertson,
    atire; bm25l/bm25+ add a score to every non-matching document and use bm25s directly)."""

    def __init__(self, k1: float, b: float, method: str) -> None:
        self.k1, self.b, self.method = k1, b, method
        self.segments: list[Segment] = []
        self.where: dict[str, tuple[int, int]] = {}
        self._stats: tuple[np.ndarray, np.ndarray, float, int] | None = None
        self._matrix: Any = None  # matrix(): the kernel's view of the live postings
        self._matrix_key: Any = None  # the statistics it was built for
        self._row_ids: list[str] | None = None  # ids(), rebuilt when rows change (not on deletes)

    # -- writes ---------------------------------------------------------------------------------
    def add(self, seg: Segment) -> None:
        self.segments.append(seg)
        self._row_ids = None
        k = len(self.segments) - 1
        for r, i in enumerate(seg.ids):
            self.where[i] = (k, r)
        self._stats = None
        if len(self.segments) > MAX_SEGMENTS:
            self._merge_small()

    def delete(self, ids: Sequence[str]) -> None:
        for i in ids:
            if i in self.where:
                k, r = self.where.pop(i)
                seg = self.segments[k]
                if not seg.live.flags.writeable:
                    seg.live = np.array(seg.live)
                seg.live[r] = False
        self._stats = None

    def _merge_small(self) -> None:
        """Merge every segment but the largest (amortised: a document is rewritten O(log N)
        times as the largest segment grows)."""
        big = max(range(len(self.segments)), key=lambda k: self.segments[k].n)
        rest = [s for k, s in enumerate(self.segments) if k != big]
        self._reset([self.segments[big], merge(rest)])

    def compact(self) -> None:
        self._reset([merge(self.segments)] if self.segments else [])

    def _reset(self, segments: list[Segment]) -> None:
        self.segments = [s for s in segments if s.n]
        self._row_ids = None
        self.where = {}
        for k, seg in enumerate(self.segments):
            for r in np.flatnonzero(np.asarray(seg.live)):
                self.where[seg.ids[r]] = (k, int(r))
        self._stats = None

    # -- reads ----------------------------------------------------------------------------------
    def _global(self) -> tuple[np.ndarray, np.ndarray, float, int]:
        """``(live (R,), norm (R,) float64, avgdl, N)`` over all rows R of all segments."""
        if self._stats is None:
            live = np.concatenate([np.asarray(s.live) for s in self.segments]) if \
                self.segments else np.zeros(0, bool)
            dl = np.concatenate([np.asarray(s.dl) for s in self.segments]).astype(np.int64) \
                if self.segments else np.zeros(0, np.int64)
            n = int(live.sum())
            avgdl = float(dl[live].sum()) / n if n else 0.0
            with np.errstate(divide="ignore", invalid="ignore"):
                norm = self.k1 * ((1 - self.b) + self.b * dl.astype(np.float64) / np.float64(avgdl))
            self._stats = (live, norm, avgdl, n)
        return self._stats

    def ids(self) -> list[str]:
        """Ids of all rows (dead ones too), in row order; built once per set of segments, not
        per search (a delete only clears a live bit)."""
        if self._row_ids is None:
            self._row_ids = [i for s in self.segments for i in s.ids]
        return self._row_ids

    def matrix_fresh(self) -> bool:
        """Whether :meth:`matrix` is built for the current statistics (no write since)."""
        return self._stats is not None and self._matrix_key is self._stats

    def matrix(self) -> Any:
        """The live postings with their BM25 term scores precomputed, term-major in bm25s's
        layout (``scores = {data, indptr, indices, num_docs}``, ``vocab_dict``): what the
        batched kernel (:mod:`retrievers.kernels.bm25`) scans. Built once per generation of the
        statistics (any add/delete invalidates it) in O(postings), with no re-tokenizing; each
        term score is the float32 that :meth:`row_scores` adds, so sums are bit-identical."""
        stats = self._global()
        if self._matrix_key is stats:
            return self._matrix
        live, norm, _, n = stats
        vocab: dict[str, int] = {}
        gt, rw, tf = [], [], []
        base = 0
        for seg in self.segments:
            local = np.array([vocab.setdefault(t, len(vocab)) for t in seg.terms], dtype=np.int64)
            cols = np.repeat(local, np.diff(np.asarray(seg.indptr)))
            rows = np.asarray(seg.rows).astype(np.int64) + base
            keep = live[rows] if len(rows) else np.zeros(0, bool)
            gt.append(cols[keep])
            rw.append(rows[keep])
            tf.append(np.asarray(seg.tf)[keep])
            base += seg.n
        g = np.concatenate(gt) if gt else np.zeros(0, np.int64)
        r = np.concatenate(rw) if rw else np.zeros(0, np.int64)
        f = np.concatenate(tf) if tf else np.zeros(0, np.float32)
        order = np.lexsort((r, g))
        g, r, f = g[order], r[order], f[order]
        df = np.bincount(g, minlength=len(vocab))
        w = np.array([np.float32(idf(self.method, int(d), n)) if d else 0.0 for d in df],
                     dtype=np.float32)
        if self.method == "atire":
            s = (f * np.float32(self.k1 + 1)) / (f.astype(np.float64) + norm[r])
        else:
            s = f / (norm[r] + f.astype(np.float64))
        data = (w[g].astype(np.float64) * s).astype(np.float32)
        indptr = np.zeros(len(vocab) + 1, dtype=np.int64)
        indptr[1:] = np.cumsum(df)
        live_vocab = {t: j for t, j in vocab.items() if df[j]}
        self._matrix = SimpleNamespace(
            scores={"data": data, "indptr": indptr, "indices": r, "num_docs": len(live)},
            vocab_dict=live_vocab, dtype="float32", nonoccurrence_array=None,
        )
        self._matrix_key = stats
        return self._matrix

    def row_scores(self, tokens: Sequence[str]) -> np.ndarray:
        """BM25 of every row for the query tokens (duplicates count twice, as in bm25s)
        ``(R,)`` float32; dead rows score 0."""
        live, norm, _, n = self._global()
        out = np.zeros(len(live), dtype=np.float32)
        bases = np.cumsum([0] + [s.n for s in self.segments])
        for t in tokens:
            hits = []
            for seg, base in zip(self.segments, bases):
                p = seg.postings(t)
                if p is not None and len(p[0]):
                    rows = p[0].astype(np.int64) + base
                    keep = live[rows]
                    hits.append((rows[keep], p[1][keep]))
            df = sum(len(r) for r, _ in hits)
            if not df:
                continue  # not in any live document: bm25s's vocabulary would not have it
            w = np.float32(idf(self.method, df, n))
            rows = np.concatenate([r for r, _ in hits])
            tf = np.concatenate([f for _, f in hits])
            if self.method == "atire":
                s = (tf * np.float32(self.k1 + 1)) / (tf.astype(np.float64) + norm[rows])
            else:
                s = tf / (norm[rows] + tf.astype(np.float64))
            out[rows] += (np.float64(w) * s).astype(np.float32)
        return out

    # -- persistence ----------------------------------------------------------------------------
    def commit(self, commit: Any, part: str) -> dict[str, Any]:
        out = []
        for seg in self.segments:
            if seg.name and commit.has(f"{seg.name}.bm25"):
                commit.keep(f"{seg.name}.bm25")
            else:
                seg.name = commit.new_name(part)
                parts: dict[str, Any] = {a: np.asarray(getattr(seg, a)) for a in ARRAYS}
                parts["terms"] = json.dumps(seg.terms).encode("utf-8")
                parts["ids"] = json.dumps(seg.ids).encode("utf-8")
                seg.layout = commit.put_pack(f"{seg.name}.bm25", parts)
            dead = np.flatnonzero(~np.asarray(seg.live)).tolist()
            out.append({"name": seg.name, "n": seg.n, "deleted": dead, "layout": seg.layout})
        return {"segments": out}

    def open(self, folder: Path, state: dict[str, Any]) -> None:
        from rag.index.folder import read_pack

        segs = []
        for s in state["segments"]:
            parts = read_pack(folder / f"{s['name']}.bm25", s["layout"])
            terms, ids = json.loads(bytes(parts["terms"])), json.loads(bytes(parts["ids"]))
            live = np.ones(s["n"], dtype=bool)
            live[s["deleted"]] = False
            if len(ids) != s["n"] or len(parts["dl"]) != s["n"] or \
                    len(parts["indptr"]) != len(terms) + 1:
                from rag.core.errors import IndexCorruptError

                raise IndexCorruptError(
                    f"index {str(folder)!r}: BM25 segment {s['name']} does not agree with the "
                    f"manifest; run `rag index --repair {folder}` or re-ingest the corpus"
                )
            seg = Segment(ids, terms, parts, live, s["name"])
            seg.layout = s["layout"]
            segs.append(seg)
        self._reset(segs)
