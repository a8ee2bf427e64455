"""Vector quantization for the exact store: binary (1 bit), 2-bit and int8 codes per dimension.

Every scheme is a per-dimension scalar quantizer: ``thresholds`` cut each dimension into
``2**bits`` buckets and ``levels (2**bits, D)`` hold the value a bucket decodes to, so the
approximate inner product of a float query ``q (B, D)`` with codes ``c (N, D)`` is
``q · levels[c, d]`` (asymmetric distance: the query stays float, as Qdrant's scalar query
encodings and BEBR's asymmetric recall stage do).

* ``binary``: one bit per dimension, threshold at the dimension's mean, each side decoding to the
  mean of its values (1-bit Lloyd). Binary embeddings with float re-ranking of the shortlist follow
  BEBR (Gan et al., "Binary Embedding-based Retrieval at Tencent", KDD 2023) and Qdrant's binary
  quantization (``rescore`` + ``oversampling``); Qdrant thresholds at 0, we centre first, which
  keeps the bits balanced for embeddings whose dimensions are not zero-mean (MiniLM's are not).
* ``2bit``: per-dimension quartiles as thresholds (four equally full buckets), bucket means as
  levels.
* ``int8``: uniform 256 levels between the 0.5% and 99.5% quantiles per dimension, values clipped
  (Qdrant's scalar quantization with ``quantile=0.99``).

Codes are packed bit planes (binary: one plane, 8 dims per byte; 2-bit: a high-bit and a low-bit
plane side by side), int8 one byte per dim, so a 384-d float32
vector (1536 B) becomes 48 B, 96 B or 384 B.

>>> rng = np.random.default_rng(0); x = rng.normal(size=(200, 16)).astype(np.float32)
>>> cb = fit("2bit", x); codes = encode(cb, x)
>>> codes.shape, round(float(np.corrcoef(approx_scores(cb, codes, x[:1])[0], x @ x[0])[0, 1]), 1)
((200, 4), 0.9)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rag.core.errors import ConfigError

BITS = {"binary": 1, "2bit": 2, "int8": 8}
FIT_SAMPLE = 100_000  # rows used to fit thresholds and levels
_CHUNK = 16_384  # rows decoded at once while scoring


@dataclass(frozen=True)
class Codebook:
    """A fitted quantizer: ``thresholds (L-1, D)`` (unused by int8) and ``levels (L, D)``."""

    kind: str
    thresholds: np.ndarray
    levels: np.ndarray

    @property
    def dim(self) -> int:
        return int(self.levels.shape[1])


def check_kind(kind: str | None) -> str | None:
    if kind is not None and kind not in BITS:
        raise ConfigError(f"quantization must be one of {sorted(BITS)} or None, got {kind!r}")
    return kind


def bytes_per_vector(kind: str | None, dim: int, dtype_bytes: int = 4) -> int:
    """Bytes one ``dim``-d vector takes in the index (``kind=None``: uncompressed floats)."""
    if kind is None:
        return dim * dtype_bytes
    return -(-dim * BITS[kind] // 8)


def _sample(x: np.ndarray) -> np.ndarray:
    if len(x) <= FIT_SAMPLE:
        return np.asarray(x, dtype=np.float32)
    rows = np.sort(np.random.default_rng(0).choice(len(x), FIT_SAMPLE, replace=False))
    return np.asarray(x[rows], dtype=np.float32)


def _bucket_means(x: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """Mean of ``x`` per bucket and dimension; an empty bucket takes its threshold midpoint."""
    codes = (x[None, :, :] > thresholds[:, None, :]).sum(0)  # (N, D)
    n_levels = len(thresholds) + 1
    edges = np.vstack([x.min(0, keepdims=True), thresholds, x.max(0, keepdims=True)])
    levels = np.empty((n_levels, x.shape[1]), dtype=np.float32)
    for lv in range(n_levels):
        m = codes == lv
        cnt = m.sum(0)
        s = np.where(m, x, 0.0).sum(0)
        mid = (edges[lv] + edges[lv + 1]) / 2
        levels[lv] = np.where(cnt > 0, s / np.maximum(cnt, 1), mid)
    return levels


def fit(kind: str, x: np.ndarray) -> Codebook:
    """Fit a ``kind`` quantizer to vectors ``x (N, D)`` (N >= 1)."""
    check_kind(kind)
    x = _sample(x)
    if x.ndim != 2 or not len(x):
        raise ConfigError(f"fit() needs a non-empty (N, D) matrix, got shape {x.shape}")
    if kind == "int8":
        lo, hi = np.quantile(x, [0.005, 0.995], axis=0)
        hi = np.where(hi > lo, hi, lo + 1e-6)
        step = (hi - lo) / 255.0
        levels = (lo[None, :] + np.arange(256)[:, None] * step[None, :]).astype(np.float32)
        return Codebook(kind, np.stack([lo, step]).astype(np.float32), levels)
    if kind == "binary":
        thresholds = x.mean(0, keepdims=True)
    else:
        thresholds = np.quantile(x, [0.25, 0.5, 0.75], axis=0)
    thresholds = thresholds.astype(np.float32)
    return Codebook(kind, thresholds, _bucket_means(x, thresholds))


def encode(cb: Codebook, x: np.ndarray) -> np.ndarray:
    """Packed codes ``(N, ceil(D * bits / 8))`` uint8 of vectors ``x (N, D)``."""
    x = np.asarray(x, dtype=np.float32)
    if x.ndim != 2 or x.shape[1] != cb.dim:
        raise ConfigError(f"encode() needs (N, {cb.dim}) vectors, got shape {x.shape}")
    if cb.kind == "int8":
        lo, step = cb.thresholds
        return np.clip(np.rint((x - lo) / step), 0, 255).astype(np.uint8)
    if cb.kind == "binary":
        return np.packbits(x > cb.thresholds[0], axis=1)
    lv = (x[None, :, :] > cb.thresholds[:, None, :]).sum(0)  # (N, D) in 0..3
    # two packed bit planes side by side: the high bits, then the low bits
    return np.hstack([np.packbits(lv >= 2, axis=1), np.packbits(lv % 2 == 1, axis=1)])


def unpack(cb: Codebook, codes: np.ndarray) -> np.ndarray:
    """Level indices ``(N, D)`` of packed ``codes``."""
    d = cb.dim
    if cb.kind == "int8":
        return codes
    if cb.kind == "binary":
        return np.unpackbits(codes, axis=1, count=d)
    half = codes.shape[1] // 2
    hi = np.unpackbits(codes[:, :half], axis=1, count=d)
    return hi * 2 + np.unpackbits(codes[:, half:], axis=1, count=d)


def decode(cb: Codebook, codes: np.ndarray) -> np.ndarray:
    """Reconstructed float32 vectors ``(N, D)`` of packed ``codes``."""
    return cb.levels[unpack(cb, codes), np.arange(cb.dim)]


def _chunk_scores(cb: Codebook, codes: np.ndarray, q: np.ndarray) -> np.ndarray:
    """``q · decode(codes)`` without materialising the decoded floats: int8 is affine
    (``lo + code * step``); binary and 2-bit decode to ``L0 + sum_l [level >= l] (L_l - L_{l-1})``
    (thermometer bit-planes), so each is one or three 0/1 matrix products."""
    if cb.kind == "int8":
        lo, step = cb.thresholds
        return (q @ lo)[:, None] + (q * step) @ codes.astype(np.float32).T
    if cb.kind == "binary":
        planes = [codes]
    else:  # level >= 1, >= 2, >= 3 from the high (h) and low (l) bit planes
        h, lo = codes[:, : codes.shape[1] // 2], codes[:, codes.shape[1] // 2 :]
        planes = [h | lo, h, h & lo]
    out = (q @ cb.levels[0])[:, None] + np.zeros((1, len(codes)), dtype=np.float32)
    for level, plane in enumerate(planes, 1):
        bits = np.unpackbits(plane, axis=1, count=cb.dim).astype(np.float32)
        out += (q * (cb.levels[level] - cb.levels[level - 1])) @ bits.T
    return out


def approx_scores(cb: Codebook, codes: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Asymmetric inner products ``(B, N)`` of float queries ``q (B, D)`` with coded vectors,
    ``_CHUNK`` rows at a time so memory stays bounded."""
    q = np.asarray(q, dtype=np.float32)
    out = np.empty((len(q), len(codes)), dtype=np.float32)
    for s in range(0, len(codes), _CHUNK):
        out[:, s : s + _CHUNK] = _chunk_scores(cb, np.asarray(codes[s : s + _CHUNK]), q)
    return out
