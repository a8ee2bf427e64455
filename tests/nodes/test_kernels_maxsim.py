"""The one MaxSim kernel (``retrievers.kernels.maxsim``) against a plain double loop in float64,
on random ragged data with empty queries and documents, exact duplicates (ties) and many chunks.

Tolerance (``tests/tolerance.py``, ``maxsim_tol``): the kernel multiplies in float32; each score
sums ``Lq`` maxima of dot products of unit vectors of width ``D`` (each max carries one dot
product's error), so ``Lq * D * eps32`` plus the sum's own rounding; float16-rounded tokens are
compared with the float64 loop on the same rounded values.
"""

from __future__ import annotations

import numpy as np
import pytest
from tolerance import maxsim_tol

from rag.core.errors import ConfigError
from retrievers.kernels.maxsim import PackedTokens, maxsim_lists, offsets_of
from retrievers.multivector import TokenStore


def maxsim_naive(q: np.ndarray, d: np.ndarray) -> float:
    """Reference: ``sum_i max_j q_i . d_j`` with plain loops in float64; 0 without tokens."""
    if len(q) == 0 or len(d) == 0:
        return 0.0
    q, d = q.astype(np.float64), d.astype(np.float64)
    return sum(max(float(np.dot(qi, dj)) for dj in d) for qi in q)


def naive_matrix(qs, ds) -> np.ndarray:
    return np.array([[maxsim_naive(q, d) for d in ds] for q in qs])


def ragged(rng, n, lo, hi, dim):
    out = []
    for _ in range(n):
        x = rng.normal(size=(int(rng.integers(lo, hi)), dim))
        out.append(x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12))
    return [x.astype(np.float32) for x in out]


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(7)
    docs = ragged(rng, 80, 0, 30, 16)  # empty documents included
    docs += [docs[3], docs[3], docs[10]]  # exact duplicates: tied scores
    queries = ragged(rng, 5, 0, 9, 16)  # an empty query included
    return docs, queries


def test_maxsim_lists_equals_the_naive_loop_on_ragged_random() -> None:
    rng = np.random.default_rng(0)
    qs = ragged(rng, 7, 0, 12, 24)  # lengths 0..11: empty queries included
    ds = ragged(rng, 60, 0, 40, 24)
    got = maxsim_lists(qs, ds)
    assert got.dtype == np.float32 and got.shape == (7, 60)
    tol = maxsim_tol(max(map(len, qs)), 24)
    np.testing.assert_allclose(got, naive_matrix(qs, ds), atol=tol, rtol=0)
    assert maxsim_lists([], ds).shape == (0, 60) and maxsim_lists(qs, []).shape == (7, 0)


@pytest.mark.parametrize("mode", ["float32", "stream"])
def test_packed_scores_equal_the_naive_loop_across_chunks(data, mode, monkeypatch) -> None:
    import retrievers.kernels.maxsim as km

    monkeypatch.setattr(km, "CHUNK_TOKENS", 50)  # many chunks, documents across boundaries
    docs, queries = data
    t16 = np.concatenate(docs).astype(np.float16)
    q = np.concatenate(queries)
    got = PackedTokens(t16, offsets_of(docs), mode).scores(q, offsets_of(queries))
    # t @ q.T against a float64 loop: BLAS may group the D-long sums differently (AVX2 vs
    # AVX-512 kernels), so each max moves by <= D eps (unit tokens)
    tol = maxsim_tol(max(len(x) for x in queries), q.shape[1])
    naive = naive_matrix(queries, [d.astype(np.float16) for d in docs])
    np.testing.assert_allclose(got, naive, atol=tol, rtol=0)
    # duplicates score alike (rows of one product; equal up to tol on any kernel)
    assert abs(got[0, 80] - got[0, 3]) <= tol and abs(got[0, 81] - got[0, 3]) <= tol


def test_float32_and_stream_modes_are_bit_identical(data) -> None:
    # bit-exact by construction: both modes run the same chunk plan and issue the same float32
    # product (same operands, same shapes); only where the float32 copy is made differs
    docs, queries = data
    t16 = np.concatenate(docs).astype(np.float16)
    q, qo = np.concatenate(queries), offsets_of(queries)
    a = PackedTokens(t16, offsets_of(docs), "float32").scores(q, qo)
    b = PackedTokens(t16, offsets_of(docs), "stream").scores(q, qo)
    np.testing.assert_array_equal(a, b)


def test_score_rows_equals_full_scores_for_any_subset(data) -> None:
    docs, queries = data
    p = PackedTokens(np.concatenate(docs), offsets_of(docs))
    full = p.scores(queries[1], np.array([0, len(queries[1])]))[0]
    rows = [81, 0, 5, 3, 1, 2, 79]
    # a gathered product (other shapes, maybe another BLAS kernel) vs the full one
    tol = maxsim_tol(len(queries[1]), queries[1].shape[1])
    np.testing.assert_allclose(p.score_rows(queries[1], rows), full[rows], rtol=0, atol=tol)
    assert p.score_rows(queries[1], []).shape == (0,)


def test_bf16_mode_is_close_and_ranks_alike(data) -> None:
    docs, queries = data
    t = np.concatenate(docs)
    exact = PackedTokens(t, offsets_of(docs)).scores(queries[1], [0, len(queries[1])])[0]
    fast = PackedTokens(t, offsets_of(docs), "bf16").scores(queries[1], [0, len(queries[1])])[0]
    assert np.abs(fast - exact).max() < 0.05 * len(queries[1])
    assert np.corrcoef(fast, exact)[0, 1] > 0.99


def test_token_store_search_and_filters_alike_in_every_mode(data) -> None:
    docs, queries = data
    ids = [f"d{i}" for i in range(len(docs))]
    old = TokenStore(kernel="stream")
    new = TokenStore()
    for s in (old, new):
        s.add(ids, docs, [{} for _ in ids])
    allowed = ids[::3]
    # bit-exact by construction: both kernels run the same chunk plan and issue the same
    # float32 product (same operands, same shapes); only where the copy is made differs
    for q in queries:
        assert new.search([q], 10) == old.search([q], 10)
        assert new.search([q], 7, allowed) == old.search([q], 7, allowed)
        np.testing.assert_array_equal(new.score(q, ids[:40]), old.score(q, ids[:40]))
    new.delete(ids[:5])  # the packed copy is rebuilt after a change
    assert all(i not in {h for h, _ in new.search([queries[1]], 100)[0]} for i in ids[:5])
    with pytest.raises(ConfigError, match="kernel must be one of"):
        TokenStore(kernel="fp8")


def test_token_store_search_matches_naive_and_round_trips(tmp_path) -> None:
    rng = np.random.default_rng(2)
    ds = ragged(rng, 30, 1, 20, 8)
    ids = [f"d{i}" for i in range(30)]
    store = TokenStore(dtype="float32")
    store.add(ids, ds, [{} for _ in ids])
    qs = ragged(rng, 4, 1, 6, 8)
    ref = naive_matrix(qs, ds)
    for q, hits, row in zip(qs, store.search(qs, k=5), ref, strict=True):
        # neighbouring scores of random vectors differ by far more than the tolerance
        assert [h for h, _ in hits] == [ids[j] for j in np.argsort(-row, kind="stable")[:5]]
        np.testing.assert_allclose(store.score(q, ids), row, atol=maxsim_tol(len(q), 8))
    store.delete(["d3", "d7"])
    store.save(tmp_path / "tok")
    back = TokenStore(dtype="float32")
    back.restore(tmp_path / "tok")
    assert isinstance(back.tokens, np.memmap) and back.count() == 28
    keep = [i for i in ids if i not in ("d3", "d7")]
    for a, b in zip(back.get(keep), [ds[int(i[1:])] for i in keep], strict=True):
        np.testing.assert_array_equal(a, b)
    first = back.search(qs[:1], k=30)[0]
    assert [h for h, _ in first] == [h for h, _ in store.search(qs[:1], 30)[0]]


def test_token_store_rejects_mismatched_input() -> None:
    s = TokenStore()
    with pytest.raises(ConfigError, match="as many"):
        s.add(["a"], [], [{}])
    s.add(["a"], [np.ones((2, 4))], [{}])
    with pytest.raises(ConfigError, match="one width"):
        s.add(["b"], [np.ones((2, 5))], [{}])
    with pytest.raises(ConfigError, match="dtype"):
        TokenStore(dtype="int8")
