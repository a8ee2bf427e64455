"""Batched BM25 kernel: bit-identical to bm25s's scores, the old per-query loop's ranking, ties and
filters included, with both backends."""

from __future__ import annotations

import numpy as np
import pytest

from rag.core.types import Query
from retrievers import BM25Retriever
from retrievers.kernels import bm25 as kbm25
from retrievers.stores.exact import topk_rows

WORDS = "cat dog bird fish purr bark sing swim tree house red blue".split()


@pytest.fixture(scope="module")
def corpus():
    rng = np.random.default_rng(5)
    docs = [
        {"id": f"d{i}", "text": " ".join(rng.choice(WORDS, int(rng.integers(1, 9)))),
         "metadata": {"even": i % 2 == 0}}
        for i in range(400)
    ]
    docs += [dict(docs[7], id="dup1"), dict(docs[7], id="dup2")]  # identical texts: ties
    queries = [" ".join(rng.choice(WORDS, int(rng.integers(1, 5)))) for _ in range(25)]
    return docs, queries + ["cat cat dog", "zebra", "the of and"]


def pairs(scored):
    """``_search``'s per-query arrays (:class:`rag.core.types.ScoredIds`) as ``(id, score)``
    pairs."""
    return [list(zip(x.ids, x.scores.tolist())) for x in scored]


def old_search(r: BM25Retriever, text: str, k: int, mask=None):
    s = r.scores(text)  # bm25s get_scores, one query
    if mask is not None:
        s = np.where(mask, s, -np.inf)
    idx, vals = topk_rows(s[None, :], k)
    # matching-only: a document with a zero BM25 sum shares no term with the query
    return [(r._order[j], float(v)) for j, v in zip(idx[0], vals[0]) if np.isfinite(v) and v != 0]


@pytest.mark.parametrize("method", ["lucene", "bm25+"])
def test_batch_equals_the_per_query_loop_with_ties_and_filters(corpus, method) -> None:
    docs, queries = corpus
    r = BM25Retriever(method=method).index(docs)
    r._build()
    mask = np.array([r.documents[i].metadata["even"] for i in r._order])
    qs = [Query(text=q) for q in queries]
    for k in (1, 10, 500):
        assert pairs(r._search(qs, k, None)) == [old_search(r, q, k) for q in queries]
        got = pairs(r._search(qs, k, {"even": True}))
        assert got == [old_search(r, q, k, mask) for q in queries]
    # and end to end: the public call ranks the same documents
    assert r.retrieve_batch(queries, k=10)[1].ids[0] == old_search(r, queries[1], 1)[0][0]


def test_backends_give_bm25s_scores_bit_for_bit(corpus) -> None:
    docs, queries = corpus
    r = BM25Retriever(method="bm25l").index(docs)
    r._build()
    toks = r.tokenize(queries)
    ref = np.stack([r.scores(q) for q in queries])
    for backend in ("numpy", "numba"):
        np.testing.assert_array_equal(kbm25.scores(r._bm25, toks, backend), ref)


def test_topk_backends_agree_including_ties_and_filters(corpus) -> None:
    docs, queries = corpus
    r = BM25Retriever().index(docs)
    r._build()
    toks = r.tokenize(queries)
    allowed = np.arange(len(r._order)) % 3 != 0
    for k in (1, 7, 64, 65):
        for mask in (None, allowed):
            a = kbm25.topk(r._bm25, toks, k, mask, backend="numpy")
            b = kbm25.topk(r._bm25, toks, k, mask, backend="numba")
            finite = np.isfinite(a[1])
            np.testing.assert_array_equal(np.isfinite(b[1]), finite)
            np.testing.assert_array_equal(a[0][finite], b[0][finite])
            np.testing.assert_array_equal(a[1][finite], b[1][finite])


def test_segments_kernel_equals_the_postings_path_after_writes(corpus) -> None:
    """Default BM25 (segments): the batched kernel over the precomputed score matrix and the
    per-query postings path (used for a few queries right after a write) give identical
    rankings and scores, deletes and filters included."""
    docs, queries = corpus
    r = BM25Retriever().index(docs[:200])
    r.index(docs[200:])  # a second segment
    r.delete(["d3", "d250", "dup1"])  # tombstones in both
    qs = [Query(text=q) for q in queries]
    seg = r._index
    rows = pairs(r._search_rows(qs, 10, {"even": True}))
    assert not seg.matrix_fresh()
    batch = pairs(r._search(qs, 10, {"even": True}))  # >= BATCH_MATRIX queries: builds the matrix
    assert seg.matrix_fresh() and batch == rows
    assert pairs(r._search(qs[:2], 500, None)) == pairs(r._search_rows(qs[:2], 500, None))
    assert all("d3" not in [i for i, _ in hits] for hits in batch)


def _agree(m, toks, ks, masks, monkeypatch) -> None:
    """The touched-rows kernel's finite entries are the full scan's finite non-zero ones, as a
    prefix, ids and scores bit-exact (both add the same postings in the same order). These
    small corpora are dense (a query touches most rows), so the kernel is forced."""
    for k in ks:
        for mask in masks:
            fi, fv = kbm25.topk(m, toks, k, mask, backend="numba")
            with monkeypatch.context() as mp:
                mp.setattr(kbm25, "TOUCHED_SHARE", 0)
                ti, tv = kbm25.topk(m, toks, k, mask, backend="numba", nonzero=True)
            for b in range(len(toks)):
                keep = np.isfinite(fv[b]) & (fv[b] != 0)
                got = np.isfinite(tv[b]) & (tv[b] != 0)
                if k <= kbm25.SMALL_K:  # the touched-rows kernel: exactly those, as a prefix
                    n = int(keep.sum())
                    assert got[:n].all() and not np.isfinite(tv[b][n:]).any()
                np.testing.assert_array_equal(ti[b][got], fi[b][keep])
                np.testing.assert_array_equal(tv[b][got], fv[b][keep])


@pytest.mark.parametrize("method", ["lucene", "robertson", "atire"])
def test_touched_rows_kernel_equals_the_full_scan(corpus, method, monkeypatch) -> None:
    """``nonzero=True`` selects among the rows in the queries' postings only, ties (identical
    documents) and filters included. "common" is in 70% of the documents: robertson's idf is
    clamped to 0 there, so touched rows that sum to exactly 0 are exercised."""
    docs, queries = corpus
    docs = [dict(d, text=d["text"] + " common") if i % 10 < 7 else d for i, d in enumerate(docs)]
    queries = [*queries, "common", "common cat", "common zebra"]
    r = BM25Retriever(method=method).index(docs)
    allowed = np.arange(len(r._index.ids())) % 3 != 0
    _agree(r._index.matrix(), r.tokenize(queries), (1, 7, 64, 200), (None, allowed), monkeypatch)


def test_touched_rows_kernel_keeps_negative_sums_where_the_full_scan_does(monkeypatch) -> None:
    """Term scores of any sign (a bm25s-layout matrix with negative entries): the zero-score
    documents rank between positive and negative sums, so a negative sum is kept only where the
    full scan ranks it inside ``k``; ties on purpose (values on a 0.25 grid)."""
    from types import SimpleNamespace

    rng = np.random.default_rng(3)
    n, vocab = 60, 8
    rows = [np.sort(rng.choice(n, int(rng.integers(5, 40)), replace=False)) for _ in range(vocab)]
    data = np.concatenate([rng.integers(-4, 5, len(x)) * 0.25 for x in rows]).astype(np.float32)
    indptr = np.concatenate([[0], np.cumsum([len(x) for x in rows])]).astype(np.int64)
    m = SimpleNamespace(
        scores={"data": data, "indptr": indptr, "indices": np.concatenate(rows).astype(np.int64),
                "num_docs": n},
        vocab_dict={f"t{i}": i for i in range(vocab)}, dtype="float32", nonoccurrence_array=None,
    )
    toks = [[f"t{i}" for i in rng.choice(vocab, int(rng.integers(1, 4)))] for _ in range(40)]
    _agree(m, toks, (1, 3, 10, 30, 59, 60), (None, np.arange(n) % 4 != 0), monkeypatch)
    monkeypatch.setattr(kbm25, "TOUCHED_SHARE", 0)
    ti, tv = kbm25.topk(m, toks, 60, None, backend="numba", nonzero=True)
    assert (tv[np.isfinite(tv)] < 0).any()  # negatives kept where k leaves room for them


def test_retrieve_batch_equals_bm25s_top10_with_ties(corpus) -> None:
    """The public call (segments, touched-rows kernel, lazy rankings) against bm25s's own
    scoring of the same tokens: scores within a tolerance, ids exact outside near-ties.
    Tolerance: a sum of ``L`` term scores, each computed by another formula than bm25s's (idf
    and length normalisation in float64 here, float32 there: a few ulps per term), so at most
    ``8 (L + 1)`` ulps of the largest score."""
    from tests.tolerance import assert_rankings_match, dot_tol

    docs, queries = corpus
    r = BM25Retriever().index(docs)
    r._build()  # a bm25s index over the same documents and tokens
    got = r.retrieve_batch(queries, k=10)
    for rk, toks in zip(got, r.tokenize(queries)):
        toks = [t for t in toks if t in r._bm25.vocab_dict]
        full = np.asarray(r._bm25.get_scores(toks), np.float32) if toks else np.zeros(len(docs))
        idx, vals = topk_rows(full[None, :], 10)
        keep = vals[0] != 0
        tol = dot_tol(8 * (len(toks) + 1), float(full.max(initial=0.0)))
        assert_rankings_match(rk.ids, rk.scores, [r._order[j] for j in idx[0][keep]],
                              vals[0][keep], tol, dict(zip(r._order, full)))
        assert ("dup1" in rk.ids) == ("dup2" in rk.ids) or rk.ids[-1] in ("dup1", "dup2")


def test_query_ids_equal_tokenize_then_token_ids(corpus) -> None:
    """The retriever's cached word -> id path gives :func:`kbm25.token_ids` of :meth:`tokenize`
    exactly: stopwords, unknown words, repeats, empty texts, punctuation and case; again from
    the cache, and afresh after a write (a new matrix, a new vocabulary)."""
    docs, queries = corpus
    r = BM25Retriever().index(docs)
    texts = [*queries, "", "The Cats, the DOGS!", "purring purrs purr", "zebra über ö", "a"]
    for _ in range(2):
        m = r._index.matrix()
        for got, want in zip(r.query_ids(texts, m), kbm25.token_ids(m, r.tokenize(texts))):
            np.testing.assert_array_equal(got, want)
        r.index([{"id": "z", "text": "zebra purring"}])
