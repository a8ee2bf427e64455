"""Dense and binary scan kernels against the one-big-product paths they replace (ties, filters)."""

from __future__ import annotations

import numpy as np
import pytest
from tolerance import assert_rankings_match, dot_tol

from rag.core.errors import ConfigError
from retrievers.kernels import binary as kbin
from retrievers.kernels import dense as kdense
from retrievers.kernels import quantize as qz
from retrievers.stores.exact import ExactStore, topk_rows


@pytest.fixture(scope="module")
def vectors():
    rng = np.random.default_rng(3)
    centres = rng.normal(size=(12, 32))
    x = centres[rng.integers(0, 12, 3000)] + 0.6 * rng.normal(size=(3000, 32))
    x = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
    x[2000:2050] = x[100]  # 51 identical rows: ties at every cut
    q = np.vstack([x[100], rng.normal(size=(6, 32))]).astype(np.float32)
    return x, q


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
@pytest.mark.parametrize("k", [1, 10, 60, 5000])
def test_dense_topk_equals_full_product_and_sort(vectors, dtype, k, monkeypatch) -> None:
    monkeypatch.setattr(kdense, "BLOCK_ROWS", 700)  # blocks that split the tied run
    x, q = vectors
    xs = x.astype(dtype)
    mask = np.arange(len(x)) % 3 != 0
    for allowed in (None, mask):
        scores = q @ np.asarray(xs, dtype=np.float32).T
        if allowed is not None:
            scores[:, ~allowed] = -np.inf
        ref = topk_rows(scores, k)
        # a block's product and the full product may use different BLAS kernels (AVX2 vs
        # AVX-512 FMA grouping): rows are unit vectors, so a score moves by <= D eps ||q||
        tol = dot_tol(q.shape[1], float(np.linalg.norm(q, axis=1).max()))
        for threads in (1, 2):
            got = kdense.topk(q, xs, k, allowed, threads)
            for b in range(len(q)):  # ties (the 51 identical rows) compared as sets
                assert_rankings_match(got[0][b], got[1][b], ref[0][b], ref[1][b], tol, scores[b])
            # within one computation, equal scores are ordered by row (the lexsort's order)
            same = got[1][:, 1:] == got[1][:, :-1]
            assert (got[0][:, 1:][same] > got[0][:, :-1][same]).all()


def test_hamming_backends_agree_with_unpacked_bits(vectors) -> None:
    x, _ = vectors
    cb = qz.fit("binary", x[:, :27])  # 27 dims: codes padded to one 64-bit word
    codes = qz.encode(cb, x[:, :27])
    words = kbin.as_words(codes)
    bits = np.unpackbits(codes, axis=1)
    ref = (bits != bits[5]).sum(axis=1)
    for backend in ("numpy", "numba", "auto"):
        np.testing.assert_array_equal(kbin.hamming(words, words[5], backend), ref)
    with pytest.raises(ConfigError, match="backend must be one of"):
        kbin.hamming(words, words[5], "simd")


def test_shortlist_keeps_every_row_tied_at_the_cut() -> None:
    dist = np.array([5, 1, 3, 3, 3, 0, 9], dtype=np.uint16)
    assert kbin.shortlist(dist, 2).tolist() == [1, 5]
    assert kbin.shortlist(dist, 3).tolist() == [1, 2, 3, 4, 5]
    allowed = np.array([1, 0, 1, 1, 1, 1, 1], dtype=bool)
    assert kbin.shortlist(dist, 2, allowed).tolist() == [2, 3, 4, 5]
    assert kbin.shortlist(dist, 99).tolist() == list(range(7))


def old_binary_search(store: ExactStore, q: np.ndarray, k: int, mask=None):
    """The store's previous path: asymmetric scores of every row, then float re-scoring."""
    scores = store._approx_scores(q)
    if mask is not None:
        scores[:, ~mask] = -np.inf
    idx, vals = store._rescored(q, scores, k) if store.rescore else topk_rows(scores, k)
    return store._hits(idx, vals)


@pytest.mark.parametrize("kw", [{}, {"dims": 16}, {"oversampling": 2.0}])
def test_binary_store_equals_the_old_path_when_the_shortlist_covers_all(vectors, kw, monkeypatch):
    x, q = vectors
    store = ExactStore(quantization="binary", **kw)
    ids = [f"d{i}" for i in range(len(x))]
    store.add(ids, x, [{"metadata": {"odd": i % 2}} for i in range(len(x))])
    mask = np.arange(len(x)) % 2 == 1
    monkeypatch.setattr(ExactStore, "hamming_factor", 1e9)
    for k in (1, 10, 40):
        assert store.search(q, k) == old_binary_search(store, q, k)
        assert store.search(q, k, {"odd": 1}) == old_binary_search(store, q, k, mask)
    monkeypatch.undo()
    # default shortlist: the same top 10 on (nearly) every query
    old = old_binary_search(store, q, 10)
    new = store.search(q, 10)
    overlap = np.mean([len({a for a, _ in o} & {b for b, _ in n}) / 10 for o, n in zip(old, new)])
    assert overlap >= 0.85  # 32 random dims; bench_kernels.py measures recall on scifact


def test_exact_store_float_search_is_unchanged_with_ties_and_filters(vectors) -> None:
    x, q = vectors
    store = ExactStore()
    ids = [f"d{i}" for i in range(len(x))]
    store.add(ids, x, [{"metadata": {"odd": i % 2}} for i in range(len(x))])
    for k, flt in ((10, None), (60, None), (60, {"odd": 0}), (10_000, {"odd": 1})):
        scores = q @ x.T
        if flt:
            scores[:, np.arange(len(x)) % 2 != flt["odd"]] = -np.inf
        assert store.search(q, k, flt) == store._hits(*topk_rows(scores, k))
