"""Batched BM25 top-k over bm25s's eager index (Lù, "BM25S: Orders of magnitude faster lexical
search via eager sparse scoring", 2024), scores identical to ``bm25s.BM25.get_scores``.

bm25s precomputes every (term, document) BM25 contribution into a CSC-like matrix
(``data``/``indices`` per term, ``indptr (V + 1,)``); a query's scores are the sum of its terms'
columns, accumulated in float32 in query-token order (``scores[indices[j]] += data[j]``, the
order bm25s's numpy ``np.add.at`` and numba loops both use, hence bit-identical scores). The
kernel does the same for a whole batch, then one exact top-k for all rows at once: score
descending, ties broken by the lower document row (:func:`retrievers.stores.exact.topk_rows`'s
order), rows outside a filter at ``-inf`` (dropped by the caller).

Cost model (``B`` queries, ``P`` postings read per query, ``N`` documents):

* scoring: ``P`` scattered float32 adds per query (scifact: ~1.5k postings per query, a few us)
  plus zeroing and reading back an ``N``-float row (20 KB for scifact's 5,183 documents);
* selection: for ``k <= SMALL_K`` with numba, one insertion pass per query, over all ``N``
  rows, or with ``nonzero=True`` (what the retriever asks: it drops zero scores anyway) and no
  non-occurrence constant, over the touched rows only (``O(P)`` instead of ``O(N)``: a query
  touches ~1k of scifact's 5,183 rows; the zeroing is per touched row too); else
  ``argpartition`` over the ``(B, N)`` matrix (``O(N)`` per row), then a sort of ``k`` per
  row. The per-query Python of the old loop (tokenize one text, look up ids, top-k, wrap) is
  paid once per batch;
* backends: ``numba`` (one compiled loop over the batch, serial: BLAS-free and predictable on a
  shared machine) or ``numpy`` (``np.add.at`` per query term, bm25s's own numpy path).

>>> import bm25s
>>> m = bm25s.BM25()
>>> m.index([["cat", "purr"], ["dog", "bark"], ["cat", "cat"]], show_progress=False)
>>> idx, vals = topk(m, [["cat"], ["fish"]], k=2)
>>> idx[0].tolist(), bool(vals[1][0] == 0)
([2, 0], True)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from retrievers.kernels.binary import backend_of
from retrievers.kernels.dense import block_topk

_NUMBA_KERNEL: Any = None
_NUMBA_TOPK: Any = None
SMALL_K = 64  # up to this k the numba backend selects by insertion in one pass per row
BLOCK = 32  # rows per block of that pass: a block whose maximum cannot enter the top k is skipped
# the touched-rows kernel runs when a batch's queries read fewer postings than N / this on
# average: scanning all N rows in order costs less than tracking the rows once a query
# touches a good share of them (scifact: 4,461 postings per query over 5,183 rows; the
# skip-zero branch of the touched scan is unpredictable there)
TOUCHED_SHARE = 8


def _numba_scores() -> Any:
    """The batched scoring loop, compiled on first use (numba installed)."""
    global _NUMBA_KERNEL
    if _NUMBA_KERNEL is None:
        import numba

        @numba.njit(nogil=True, cache=True)
        def kernel(data, indptr, indices, ids, ptr, out):  # type: ignore[no-untyped-def]  # noqa: ANN001, ANN202
            for b in range(len(ptr) - 1):
                row = out[b]
                for t in range(ptr[b], ptr[b + 1]):
                    tok = ids[t]
                    for j in range(indptr[tok], indptr[tok + 1]):
                        row[indices[j]] += data[j]

        _NUMBA_KERNEL = kernel
    return _NUMBA_KERNEL


def _numba_topk() -> Any:  # noqa: C901 (one fused numba loop nest)
    """Fused per query: zero one row, add the postings, add the non-occurrence constant, mask,
    then an exact top-k by one pass of insertion (k small): a document enters only if strictly
    better than the current k-th, so among equal scores the lower row, met first, stays ahead.
    Once k are held, a block of ``BLOCK`` rows whose maximum is not above the k-th is skipped
    after one max pass (most blocks, for k = 10). No ``(B, N)`` matrix is written."""
    global _NUMBA_TOPK
    if _NUMBA_TOPK is None:
        import numba

        @numba.njit(nogil=True, cache=True)
        def kernel(data, indptr, indices, ids, ptr, const, allowed, k, idx, vals):  # type: ignore[no-untyped-def]  # noqa: ANN001, ANN202, C901, E501
            n = len(allowed)
            row = np.zeros(n, dtype=vals.dtype)
            for b in range(len(ptr) - 1):
                row[:] = 0
                for t in range(ptr[b], ptr[b + 1]):
                    tok = ids[t]
                    for j in range(indptr[tok], indptr[tok + 1]):
                        row[indices[j]] += data[j]
                iv, vv = idx[b], vals[b]
                for j in range(k):
                    vv[j] = -np.inf
                    iv[j] = j  # -inf placeholders, dropped by callers
                filled = 0
                c = const[b]  # 0 unless bm25l/bm25+ (callers leave it 0 for an empty query)
                add = c != 0
                thr = -np.inf  # the k-th score once k are held (a local: this is the hot loop)
                for s0 in range(0, n, BLOCK):
                    e0 = min(s0 + BLOCK, n)
                    if filled == k:  # a block whose best cannot enter is skipped whole
                        mx = row[s0]
                        for j in range(s0 + 1, e0):
                            mx = max(mx, row[j])
                        if not (mx + c if add else mx) > thr:  # rounding keeps the order
                            continue
                    for j in range(s0, e0):
                        x = row[j]
                        if add:
                            x += c
                        if filled == k and not x > thr:
                            continue
                        if not allowed[j]:
                            if filled == k:
                                continue
                            x = -np.inf
                        p = filled if filled < k else k - 1
                        while p > 0 and x > vv[p - 1]:
                            vv[p] = vv[p - 1]
                            iv[p] = iv[p - 1]
                            p -= 1
                        vv[p] = x
                        iv[p] = j
                        if filled < k:
                            filled += 1
                        if filled == k:
                            thr = vv[k - 1]

        _NUMBA_TOPK = kernel
    return _NUMBA_TOPK


# The touched-rows kernel: plain functions compiled on first use (:func:`_touched`); they call
# each other through these module globals, bound to the compiled versions first, so numba can
# cache every one of them on disk (closures over compiled functions are recompiled per process).
_nb_ahead: Any = None
_nb_scan_touched: Any = None
_nb_drop: Any = None
_nb_touched: Any = None


def _ahead(x, d, v, i):  # type: ignore[no-untyped-def]  # noqa: ANN001, ANN202
    """``(x, row d)`` ranks ahead of ``(v, row i)``: a higher score, or equal and a lower row."""
    return x > v or (x == v and d < i)


def _scan_touched(row, seen, touched, m, allowed, k, iv, vv):  # type: ignore[no-untyped-def]  # noqa: ANN001, ANN202, E501
    """One query's top ``k`` over its ``m`` touched rows, which come in postings order: an entry
    must rank ahead of the current k-th (:func:`_ahead`: ties compare rows). Zeros and rows
    outside ``allowed`` are skipped; re-zeroes the row and the ``seen`` marks it visits and
    returns how many allowed rows scored non-zero."""
    filled = 0
    nonzero = 0
    for u in range(m):
        d = touched[u]
        x = row[d]
        row[d] = 0
        seen[d] = False
        if x == 0 or not allowed[d]:
            continue
        nonzero += 1
        if filled == k and not _nb_ahead(x, d, vv[k - 1], iv[k - 1]):
            continue
        p = min(filled, k - 1)
        while p > 0 and _nb_ahead(x, d, vv[p - 1], iv[p - 1]):
            vv[p] = vv[p - 1]
            iv[p] = iv[p - 1]
            p -= 1
        vv[p] = x
        iv[p] = d
        filled = min(filled + 1, k)
    return nonzero


def _drop_negatives(vv, zeros, k):  # type: ignore[no-untyped-def]  # noqa: ANN001, ANN202
    """The allowed documents scoring exactly 0 (``zeros`` of them) rank between the positive
    and the negative sums (a negative term score, possible in a bm25s-layout matrix), so a
    negative sum at position ``p`` stays only where the full scan keeps it: ``p + zeros < k``."""
    for p in range(k):
        if vv[p] < 0 and p + zeros >= k:
            vv[p] = -np.inf


def _touched_kernel(data, indptr, indices, ids, ptr, allowed, n_allowed, k, idx, vals):  # type: ignore[no-untyped-def]  # noqa: ANN001, ANN202, E501
    """Fused per query, for scorers whose non-occurrence constant is 0 (every segmented method,
    Lucene BM25 the default) and queries whose postings are few against ``N``: only documents
    in the query's postings can score non-zero, so the kernel records the rows it touches while
    adding (in the full scan's order: bit-identical sums), selects among them only
    (:func:`_scan_touched`) and re-zeroes only them: ``O(postings)`` per query instead of
    ``O(N)``. Zero scores are left out (their positions stay ``-inf``)."""
    n = len(allowed)
    row = np.zeros(n, dtype=vals.dtype)
    seen = np.zeros(n, dtype=np.bool_)
    touched = np.empty(n, dtype=np.int64)
    idx[:] = np.arange(k)  # -inf placeholders, dropped by callers
    vals[:] = -np.inf
    for b in range(len(ptr) - 1):
        m = 0
        for t in range(ptr[b], ptr[b + 1]):
            for j in range(indptr[ids[t]], indptr[ids[t] + 1]):
                d = indices[j]
                if not seen[d]:
                    seen[d] = True
                    touched[m] = d
                    m += 1
                row[d] += data[j]
        nonzero = _nb_scan_touched(row, seen, touched, m, allowed, k, idx[b], vals[b])
        _nb_drop(vals[b], n_allowed - nonzero, k)


def _touched() -> Any:
    """:func:`_touched_kernel`, compiled (with its helpers) on first use."""
    global _nb_ahead, _nb_scan_touched, _nb_drop, _nb_touched
    if _nb_touched is None:
        import numba

        _nb_ahead = numba.njit(nogil=True, cache=True, inline="always")(_ahead)
        _nb_scan_touched = numba.njit(nogil=True, cache=True)(_scan_touched)
        _nb_drop = numba.njit(nogil=True, cache=True)(_drop_negatives)
        _nb_touched = numba.njit(nogil=True, cache=True)(_touched_kernel)
    return _nb_touched


def token_ids(bm25: Any, queries: Sequence[Sequence[str]]) -> tuple[np.ndarray, np.ndarray]:
    """Flat vocabulary ids of the queries' known tokens (duplicates kept, as bm25s) and the
    per-query offsets ``(B + 1,)``."""
    vocab = bm25.vocab_dict
    ids = [[vocab[t] for t in q if t in vocab] for q in queries]
    ptr = np.zeros(len(ids) + 1, dtype=np.int64)
    ptr[1:] = np.cumsum([len(x) for x in ids])
    flat = np.fromiter((t for x in ids for t in x), dtype=np.int64, count=int(ptr[-1]))
    return flat, ptr


QueryIds = tuple[np.ndarray, np.ndarray]  # (flat vocabulary ids, per-query offsets (B + 1,))


def _ids(bm25: Any, queries: Sequence[Sequence[str]] | QueryIds) -> QueryIds:
    """``queries`` as :func:`token_ids` gives them (already so when passed as a tuple)."""
    return queries if isinstance(queries, tuple) else token_ids(bm25, queries)


def scores(
    bm25: Any, queries: Sequence[Sequence[str]] | QueryIds, backend: str = "auto"
) -> np.ndarray:
    """BM25 scores ``(B, N)`` float32 of tokenized ``queries`` (or their :func:`token_ids`)
    for every document."""
    sc = bm25.scores
    data, indptr, indices = (np.asarray(sc[x]) for x in ("data", "indptr", "indices"))
    flat, ptr = _ids(bm25, queries)
    nq = len(ptr) - 1
    out = np.zeros((nq, int(sc["num_docs"])), dtype=np.dtype(bm25.dtype))
    if backend_of(backend) == "numba":
        _numba_scores()(data, indptr, indices, flat, ptr, out)
    else:
        for b in range(nq):
            for tok in flat[ptr[b] : ptr[b + 1]]:
                lo, hi = indptr[tok], indptr[tok + 1]
                np.add.at(out[b], indices[lo:hi], data[lo:hi])
    nonocc = getattr(bm25, "nonoccurrence_array", None)
    if nonocc is not None:  # bm25l / bm25+: the terms' scores where they do not occur
        for b in range(nq):
            if ptr[b + 1] > ptr[b]:
                out[b] += nonocc[flat[ptr[b] : ptr[b + 1]]].sum()
    return out


def topk(
    bm25: Any,
    queries: Sequence[Sequence[str]] | QueryIds,
    k: int,
    allowed: np.ndarray | None = None,
    backend: str = "auto",
    nonzero: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Rows ``(B, min(k, N))`` and scores of the best documents per tokenized query (or per
    query of :func:`token_ids`' ``(flat, ptr)``), sorted by (score descending, row ascending);
    rows outside ``allowed`` score ``-inf``.

    ``nonzero=True``: the caller keeps only finite, non-zero scores (documents that share a term
    with the query), so entries scoring 0 may come back as ``-inf``; the finite non-zero entries
    are the same as without. With the numba backend, no non-occurrence constant and queries that
    read few postings against ``N`` (``TOUCHED_SHARE``), this selects among the touched rows
    only (:func:`_touched_kernel`)."""
    n = int(bm25.scores["num_docs"])
    k = min(k, n)
    if k <= SMALL_K and backend_of(backend) == "numba":
        sc = bm25.scores
        data, indptr, indices = (np.asarray(sc[x]) for x in ("data", "indptr", "indices"))
        flat, ptr = _ids(bm25, queries)
        nq = len(ptr) - 1
        dtype = np.dtype(bm25.dtype)
        idx = np.empty((nq, k), dtype=np.int64)
        vals = np.empty((nq, k), dtype=dtype)
        mask = np.ones(n, dtype=np.bool_) if allowed is None else np.asarray(allowed, np.bool_)
        nonocc = getattr(bm25, "nonoccurrence_array", None)
        postings = int((indptr[flat + 1] - indptr[flat]).sum())
        if nonzero and nonocc is None and postings * TOUCHED_SHARE < n * nq:
            n_allowed = n if allowed is None else int(np.count_nonzero(mask))
            _touched()(data, indptr, indices, flat, ptr, mask, n_allowed, k, idx, vals)
            return idx, vals
        const = np.zeros(nq, dtype=dtype)
        if nonocc is not None:  # the same float32 sums bm25s adds to every document
            for b in range(nq):
                if ptr[b + 1] > ptr[b]:
                    const[b] = nonocc[flat[ptr[b] : ptr[b + 1]]].sum()
        _numba_topk()(data, indptr, indices, flat, ptr, const, mask, k, idx, vals)
        return idx, vals
    s = scores(bm25, queries, backend)
    if allowed is not None:
        s[:, ~allowed] = -np.inf
    part = block_topk(s, k)
    vals = np.take_along_axis(s, part, axis=1)
    order = np.lexsort((part, -vals), axis=1)
    return np.take_along_axis(part, order, axis=1), np.take_along_axis(vals, order, axis=1)
