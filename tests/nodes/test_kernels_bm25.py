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
