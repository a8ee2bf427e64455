"""The packed MaxSim kernel against the reference kernels, on random ragged data with ties."""

from __future__ import annotations

import numpy as np
import pytest
from tolerance import maxsim_tol

from rag.errors import ConfigError
from retrievers.kernels.maxsim import PackedTokens
from retrievers.multivector import TokenStore, maxsim_flat, maxsim_naive
from retrievers.multivector.maxsim import offsets_of


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


@pytest.mark.parametrize("mode", ["float32", "stream"])
def test_packed_scores_equal_the_reference_flat_kernel(data, mode, monkeypatch) -> None:
    import retrievers.kernels.maxsim as km

    monkeypatch.setattr(km, "CHUNK_TOKENS", 50)  # many chunks, documents across boundaries
    docs, queries = data
    t16 = np.concatenate(docs).astype(np.float16)
    q = np.concatenate(queries)
    ref = maxsim_flat(q, offsets_of(queries), t16, offsets_of(docs))
    got = PackedTokens(t16, offsets_of(docs), mode).scores(q, offsets_of(queries))
    # t @ q.T vs q @ t.T: the same products, but BLAS may group the D-long sums differently
    # (AVX2 vs AVX-512 kernels), so each max moves by <= D eps (unit tokens)
    tol = maxsim_tol(max(len(x) for x in queries), q.shape[1])
    np.testing.assert_allclose(got, ref, rtol=0, atol=tol)
    naive = [[maxsim_naive(x.astype(np.float64), d.astype(np.float16).astype(np.float64))
              for d in docs] for x in queries]
    np.testing.assert_allclose(got, naive, rtol=0, atol=tol)
    # duplicates score alike (rows of one product; equal up to tol on any kernel)
    assert abs(got[0, 80] - got[0, 3]) <= tol and abs(got[0, 81] - got[0, 3]) <= tol


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


def test_token_store_search_and_filters_unchanged(data) -> None:
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
