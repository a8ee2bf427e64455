"""Sort a run once, the way trec_eval does, into dense arrays that every measure kernel reads.

trec_eval (``form_res_rels.c``) stores each score as a C ``float`` (32-bit) and sorts a query's
documents by that score descending, breaking ties by document id **descending** (``strcmp`` of
the second id with the first). We do the same: scores are rounded to float32 before sorting and
ties go to the larger id, so two scores equal in float32 tie even if they differ as doubles.

Relevance of a retrieved document is its qrels value; a document absent from the qrels is
"unjudged" (:data:`UNJUDGED`). Relevant means ``rel >= rel_level`` (trec_eval's ``-l``, default 1).

Shapes: ``Q`` evaluated queries, ``D`` the deepest rank any requested measure reads.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Mapping
from dataclasses import dataclass
from itertools import chain
from operator import itemgetter

import numpy as np

from rag.core.errors import DataError

#: relevance value of a retrieved document the qrels do not mention (and of padding).
UNJUDGED = np.iinfo(np.int32).min

Run = Mapping[str, Mapping[str, float]]
Qrels = Mapping[str, Mapping[str, int]]


@dataclass(frozen=True)
class Prepared:
    """A run joined with its qrels, sorted trec_eval's way.

    ``rels``: ``(Q, D)`` int32 qrels value of the document at each rank, :data:`UNJUDGED` where
    the document has no judgment or the ranking is shorter than ``D``.
    ``n_ret``: ``(Q,)`` documents retrieved (before cutting at ``D``).
    ``n_rel``: ``(Q,)`` judged documents with ``rel >= rel_level``.
    ``ideal``: ``(Q, I)`` float64 positive qrels values sorted descending, zero-padded
    (nDCG's ideal ranking).
    """

    qids: list[str]
    rels: np.ndarray
    n_ret: np.ndarray
    n_rel: np.ndarray
    ideal: np.ndarray
    rel_level: int = 1

    @property
    def relevant(self) -> np.ndarray:
        """``(Q, D)`` bool: the document at each rank is relevant."""
        return self.rels >= self.rel_level

    @property
    def judged(self) -> np.ndarray:
        """``(Q, D)`` bool: the document at each rank has a judgment (any value, even <= 0)."""
        return self.rels != UNJUDGED


def prepare(
    run: Run, qrels: Qrels, qids: list[str], depth: int | None = None, rel_level: int = 1
) -> Prepared:
    """Join ``run`` and ``qrels`` for ``qids`` (each must be in ``qrels``; absent from ``run``
    means an empty ranking) and sort every query's documents trec_eval's way.

    ``depth`` caps the ranks kept (``None``: all). Runs with NaN scores are rejected.
    """
    empty: dict[str, float] = {}
    per_q = [run.get(q, empty) for q in qids]
    lengths = np.fromiter((len(r) for r in per_q), dtype=np.int64, count=len(per_q))
    n = int(lengths.sum())
    width = (
        int(lengths.max(initial=0)) if depth is None else min(depth, int(lengths.max(initial=0)))
    )
    rels = np.full((len(qids), width), UNJUDGED, dtype=np.int32)
    if n:
        _fill_sorted(per_q, [qrels[q] for q in qids], lengths, n, rels)
    n_rel = np.fromiter(
        (sum(1 for v in qrels[q].values() if v >= rel_level) for q in qids),
        dtype=np.int64,
        count=len(qids),
    )
    return Prepared(qids, rels, lengths, n_rel, _ideal([qrels[q] for q in qids]), rel_level)


def _fill_sorted(
    per_q: list[Mapping[str, float]],
    per_q_rels: list[Mapping[str, int]],
    lengths: np.ndarray,
    n: int,
    out: np.ndarray,
) -> None:
    """Write the qrels value of every judged retrieved document at its trec_eval rank.

    Work per retrieved document is numeric (one sort of an int64 key); string work is limited to
    judged documents and to ties that reach rank ``out.shape[1]``.
    """
    scores = np.fromiter(chain.from_iterable(r.values() for r in per_q), dtype=np.float64, count=n)
    if np.isnan(scores).any():
        raise DataError("the run has NaN scores; trec_eval cannot order them, fix the system")
    qidx = np.repeat(np.arange(len(per_q), dtype=np.int64), lengths)
    key = _sort_key(scores, qidx)
    order = np.argsort(key)  # tied slots are re-sorted below, so stability is not needed
    skey = key[order]
    starts = np.concatenate(([0], np.cumsum(lengths)[:-1]))
    width = out.shape[1]
    docs = _break_ties(order, skey, starts[qidx], width, per_q)
    # judged documents that were retrieved: (query, score, id, rel)
    found = [
        (i, s, d, rel)
        for i, (r, qr) in enumerate(zip(per_q, per_q_rels, strict=True))
        for d, rel in qr.items()
        if (s := r.get(d)) is not None
    ]
    if not found:
        return
    qi = np.fromiter((f[0] for f in found), dtype=np.int64, count=len(found))
    fs = np.fromiter((f[1] for f in found), dtype=np.float64, count=len(found))
    fkey = _sort_key(fs, qi)
    lo = np.searchsorted(skey, fkey, side="left")
    hi = np.searchsorted(skey, fkey, side="right")
    slot = lo.copy()
    rank = lo - starts[qi]
    tied = np.flatnonzero((hi - lo > 1) & (rank < width))
    if len(tied):
        slot[tied] = _slots_in_ties(tied, lo, hi, found, order, docs or _flat(per_q))
    pos = slot - starts[qi]
    keep = pos < width
    out[qi[keep], pos[keep]] = np.fromiter((f[3] for f in found), dtype=np.int64)[keep]


def _flat(per_q: list[Mapping[str, float]]) -> list[str]:
    return list(chain.from_iterable(per_q))


def _sort_key(scores: np.ndarray, qidx: np.ndarray) -> np.ndarray:
    """int64 key whose ascending order is (query, float32 score descending).

    The float32 bit pattern is mapped to an order-preserving unsigned int (negative floats:
    all bits flipped; others: sign bit set), then reversed; -0.0 is folded into 0.0 and values
    beyond float32 become +-inf, as the C cast in trec_eval does.
    """
    with np.errstate(over="ignore"):
        s32 = scores.astype(np.float32) + np.float32(0.0)
    bits = s32.view(np.uint32).astype(np.int64)
    ascending = np.where(bits >= 1 << 31, ~bits & 0xFFFFFFFF, bits | 1 << 31)
    return (qidx << 32) | (0xFFFFFFFF - ascending)


def _break_ties(
    order: np.ndarray,
    skey: np.ndarray,
    start_of_slot: np.ndarray,
    width: int,
    per_q: list[Mapping[str, float]],
) -> list[str] | None:
    """Reorder runs of equal keys (same query, same float32 score) in ``order`` by document id
    descending, trec_eval's ``strcmp(second, first)``. Only ties that start above rank ``width``
    are reordered. Returns the flat id list when it had to build it."""
    tied_next = skey[1:] == skey[:-1]
    if not tied_next.any():
        return None
    new_group = np.concatenate(([True], ~tied_next))
    group_of = np.cumsum(new_group) - 1
    first_rank = (np.arange(len(order)) - start_of_slot)[new_group]
    in_tie = np.zeros(len(order), dtype=bool)
    in_tie[:-1] |= tied_next
    in_tie[1:] |= tied_next
    in_tie &= first_rank[group_of] < width
    slots = np.flatnonzero(in_tie)
    if len(slots) == 0:
        return None
    group = group_of[slots]
    idx = order[slots]
    docs = _flat(per_q)
    names = np.array(itemgetter(*idx.tolist())(docs))
    # (group desc, id asc) reversed == (group asc, id desc)
    order[slots] = idx[np.lexsort((names, -group))[::-1]]
    return docs


def _slots_in_ties(
    tied: np.ndarray,
    lo: np.ndarray,
    hi: np.ndarray,
    found: list[tuple[int, float, str, int]],
    order: np.ndarray,
    docs: list[str],
) -> np.ndarray:
    """Slot of each judged document whose score ties: its group is sorted by id descending,
    so its offset is the number of ids in the group greater than its own."""
    ascending_ids: dict[int, list[str]] = {}
    out = np.empty(len(tied), dtype=np.int64)
    for j, t in enumerate(tied.tolist()):
        a, b = int(lo[t]), int(hi[t])
        ids = ascending_ids.get(a)
        if ids is None:
            ids = ascending_ids[a] = sorted(itemgetter(*order[a:b].tolist())(docs))
        out[j] = a + (len(ids) - bisect_right(ids, found[t][2]))
    return out


def _ideal(per_q_rels: list[Mapping[str, int]]) -> np.ndarray:
    gains = [sorted((v for v in qr.values() if v > 0), reverse=True) for qr in per_q_rels]
    width = max((len(g) for g in gains), default=0)
    ideal = np.zeros((len(gains), width), dtype=np.float64)
    for i, g in enumerate(gains):
        ideal[i, : len(g)] = g
    return ideal


def discounts(n: int) -> np.ndarray:
    """``1 / log2(rank + 1)`` for ranks ``1..n``: shape ``(n,)``."""
    return 1.0 / np.log2(np.arange(2, n + 2, dtype=np.float64))
