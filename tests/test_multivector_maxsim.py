"""Exact MaxSim kernels and the token store against the naive double loop."""

from __future__ import annotations

import numpy as np
import pytest

from retrievers.multivector import (
    TokenStore,
    maxsim_flat,
    maxsim_lists,
    maxsim_naive,
    maxsim_padded,
)
from retrievers.multivector.maxsim import offsets_of


def ragged(rng: np.random.Generator, n: int, lo: int, hi: int, dim: int, dtype=np.float64):
    out = []
    for _ in range(n):
        x = rng.normal(size=(int(rng.integers(lo, hi)), dim))
        out.append((x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)).astype(dtype))
    return out


def naive_matrix(qs, ds) -> np.ndarray:
    return np.array([[maxsim_naive(q.astype(np.float64), d.astype(np.float64)) for d in ds]
                     for q in qs])


def pad(arrays, dim):
    L = max(1, max(len(a) for a in arrays))
    x = np.zeros((len(arrays), L, dim), dtype=arrays[0].dtype)
    m = np.zeros((len(arrays), L), dtype=bool)
    for i, a in enumerate(arrays):
        x[i, : len(a)] = a
        m[i, : len(a)] = True
    return x, m


@pytest.mark.parametrize("dtype,tol", [(np.float64, 1e-12), (np.float32, 1e-6)])
def test_kernels_equal_naive_on_ragged_random(dtype, tol) -> None:
    rng = np.random.default_rng(0)
    qs = ragged(rng, 7, 0, 12, 24, dtype)  # lengths 0..11: empty queries included
    ds = ragged(rng, 60, 0, 40, 24, dtype)
    ref = naive_matrix(qs, ds)
    np.testing.assert_allclose(maxsim_lists(qs, ds), ref, atol=tol, rtol=0)
    q, qm = pad(qs, 24)
    d, dm = pad(ds, 24)
    np.testing.assert_allclose(maxsim_padded(q, qm, d, dm), ref, atol=tol, rtol=0)


def test_flat_kernel_chunks_and_float16_tokens(monkeypatch) -> None:
    import retrievers.multivector.maxsim as ms

    monkeypatch.setattr(ms, "_BLOCK", 64)  # force many tiny chunks
    rng = np.random.default_rng(1)
    qs = ragged(rng, 3, 1, 9, 16, np.float32)
    ds = ragged(rng, 25, 0, 30, 16, np.float32)
    t16 = np.concatenate(ds).astype(np.float16)
    got = maxsim_flat(np.concatenate(qs), offsets_of(qs), t16, offsets_of(ds))
    ref = naive_matrix(qs, [d.astype(np.float16).astype(np.float32) for d in ds])
    np.testing.assert_allclose(got, ref, atol=1e-5, rtol=0)


def test_token_store_search_matches_naive_and_round_trips(tmp_path) -> None:
    rng = np.random.default_rng(2)
    ds = ragged(rng, 30, 1, 20, 8, np.float32)
    ids = [f"d{i}" for i in range(30)]
    store = TokenStore(dtype="float32")
    store.add(ids, ds, [{} for _ in ids])
    qs = ragged(rng, 4, 1, 6, 8, np.float32)
    ref = naive_matrix(qs, ds)
    for q, hits, row in zip(qs, store.search(qs, k=5), ref, strict=True):
        assert [h for h, _ in hits] == [ids[j] for j in np.argsort(-row, kind="stable")[:5]]
        np.testing.assert_allclose(store.score(q, ids), row, atol=1e-6)
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
    from rag.errors import ConfigError

    s = TokenStore()
    with pytest.raises(ConfigError, match="as many"):
        s.add(["a"], [], [{}])
    s.add(["a"], [np.ones((2, 4))], [{}])
    with pytest.raises(ConfigError, match="one width"):
        s.add(["b"], [np.ones((2, 5))], [{}])
    with pytest.raises(ConfigError, match="dtype"):
        TokenStore(dtype="int8")
