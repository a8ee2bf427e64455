"""MUVERA fixed dimensional encodings (Dhulipala, Hadian, Jayaram, Lee, Mirrokni, NeurIPS 2024).

A point cloud (a text's token vectors) becomes one vector whose inner product approximates the
Chamfer / MaxSim similarity, so any single-vector store can find MaxSim candidates. Following
the paper's Algorithm and Google's reference code (``graph-mining/sketching/point_cloud``):

For each of ``r_reps`` repetitions, ``k_sim`` Gaussian SimHash hyperplanes split the space into
``B = 2**k_sim`` partitions (a point's partition is the Gray-code index of its sign bits). Each
point is optionally projected to ``d_proj`` dimensions by an AMS sketch (one random +-1 per input
coordinate, Google's code; unscaled, inner products are preserved in expectation). Then, per
partition:

* query (``SUM``): the sum of the projected points that fall in the partition;
* document (``AVERAGE``): their mean; with ``fill_empty`` an empty partition takes the point
  whose sign bits are nearest (Hamming distance) to the partition's, the first such point on ties.

The ``r_reps * B * d_proj`` coordinates are concatenated (repetition-major, then partition), and
an optional Count Sketch reduces them to ``d_final``. Random matrices are drawn from
``numpy.random.default_rng`` seeded by ``(seed, repetition, role)``: deterministic, not
bit-identical to Google's ``std::mt19937`` draws.

>>> import numpy as np
>>> fde = MuveraFDE(k_sim=2, r_reps=3, d_proj=4)
>>> rng = np.random.default_rng(0)
>>> fde.encode_documents([rng.normal(size=(5, 8))]).shape
(1, 48)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import numpy as np

from rag.core.errors import ConfigError
from rag.core.nodes import Node


def gray_partition(bits: np.ndarray) -> np.ndarray:
    """Partition index of sign bits ``(T, k)`` (first hyperplane = most significant), built as
    Google's ``AppendToGrayCode``: ``p = 2p + (bit xor (p & 1))``."""
    p = np.zeros(len(bits), dtype=np.int64)
    for i in range(bits.shape[1]):
        p = (p << 1) + (bits[:, i].astype(np.int64) ^ (p & 1))
    return p


def bits_code(bits: np.ndarray) -> np.ndarray:
    """Sign bits ``(T, k)`` as one integer per row (first hyperplane = most significant)."""
    weights = 1 << np.arange(bits.shape[1] - 1, -1, -1, dtype=np.int64)
    return bits.astype(np.int64) @ weights


def _popcount(x: np.ndarray) -> np.ndarray:
    return np.unpackbits(x.astype(">u4").view(np.uint8).reshape(*x.shape, 4), axis=-1).sum(-1)


class MuveraFDE(Node):
    """MUVERA FDE parameters and the vectorised encoder.

    Args:
        k_sim: SimHash bits per repetition (``2**k_sim`` partitions), 0..30.
        r_reps: repetitions.
        d_proj: inner AMS projection width per partition; ``None`` keeps the token width.
        d_final: Count Sketch output width; ``None`` keeps ``r_reps * 2**k_sim * d_proj``.
        fill_empty: fill a document's empty partitions with its nearest point (the paper's
            default for documents; queries are never filled).
        seed: seed of every random draw.
    """

    name: ClassVar[str] = "muvera_fde"
    kind: ClassVar[str] = "encoder"

    def __init__(
        self,
        k_sim: int = 5,
        r_reps: int = 20,
        d_proj: int | None = 32,
        d_final: int | None = None,
        fill_empty: bool = True,
        seed: int = 42,
    ) -> None:
        for nm, v, lo in (("k_sim", k_sim, 0), ("r_reps", r_reps, 1), ("seed", seed, 0)):
            if isinstance(v, bool) or not isinstance(v, int) or v < lo:
                raise ConfigError(f"{nm} must be an int >= {lo}, got {v!r}")
        if k_sim > 30:
            raise ConfigError(f"k_sim must be <= 30 (2**k_sim partitions), got {k_sim}")
        for nm, dim in (("d_proj", d_proj), ("d_final", d_final)):
            if dim is not None and (isinstance(dim, bool) or not isinstance(dim, int) or dim < 1):
                raise ConfigError(f"{nm} must be an int >= 1 or None, got {dim!r}")
        self.k_sim = k_sim
        self.r_reps = r_reps
        self.d_proj = d_proj
        self.d_final = d_final
        self.fill_empty = fill_empty
        self.seed = seed
        self._cache: dict[int, list[tuple[np.ndarray, np.ndarray | None]]] = {}

    def output_dim(self, dim: int) -> int:
        """Width of the encoding for token vectors of width ``dim``."""
        if self.d_final is not None:
            return self.d_final
        return self.r_reps * (1 << self.k_sim) * (self.d_proj or dim)

    # -- random matrices ------------------------------------------------------------------------
    def _matrices(self, dim: int) -> list[tuple[np.ndarray, np.ndarray | None]]:
        """Per repetition: SimHash ``(dim, k_sim)`` Gaussians and the AMS sketch ``(dim, d_proj)``
        (one +-1 per row) or ``None`` for the identity."""
        if dim not in self._cache:
            mats = []
            for rep in range(self.r_reps):
                g = np.random.default_rng([self.seed, rep, 0]).standard_normal((dim, self.k_sim))
                ams = None
                if self.d_proj is not None:
                    rng = np.random.default_rng([self.seed, rep, 1])
                    ams = np.zeros((dim, self.d_proj), dtype=np.float32)
                    cols = rng.integers(0, self.d_proj, size=dim)
                    ams[np.arange(dim), cols] = rng.choice([-1.0, 1.0], size=dim)
                mats.append((g.astype(np.float32), ams))
            self._cache[dim] = mats
        return self._cache[dim]

    def _count_sketch(self, x: np.ndarray) -> np.ndarray:
        if self.d_final is None:
            return x
        from scipy import sparse  # here: importing the package needs no scipy (the vLLM venv)

        rng = np.random.default_rng([self.seed, 2])
        idx = rng.integers(0, self.d_final, size=x.shape[1])
        sign = rng.choice([-1.0, 1.0], size=x.shape[1]).astype(np.float32)
        sketch = sparse.csr_matrix(
            (sign, (idx, np.arange(x.shape[1]))), shape=(self.d_final, x.shape[1])
        )
        return np.asarray((sketch @ x.T).T, dtype=np.float32)

    # -- encoding -------------------------------------------------------------------------------
    def encode_queries(self, clouds: Sequence[np.ndarray]) -> np.ndarray:
        """Query FDEs ``(B, output_dim)``: per-partition SUM, no filling."""
        return self._encode(clouds, document=False)

    def encode_documents(self, clouds: Sequence[np.ndarray]) -> np.ndarray:
        """Document FDEs ``(N, output_dim)``: per-partition AVERAGE, empty partitions filled."""
        return self._encode(clouds, document=True)

    def _encode(self, clouds: Sequence[np.ndarray], document: bool, chunk: int = 256) -> np.ndarray:
        widths = {c.shape[1] for c in clouds if np.ndim(c) == 2}
        if any(np.ndim(c) != 2 for c in clouds) or len(widths) > 1:
            raise ConfigError(f"point clouds must be 2-D with one width, got widths {widths}")
        if not clouds:
            return np.zeros((0, self.d_final or 0), dtype=np.float32)
        dim = widths.pop()
        parts = [
            self._encode_chunk(clouds[s : s + chunk], dim, document)
            for s in range(0, len(clouds), chunk)
        ]
        return self._count_sketch(np.concatenate(parts))

    def _encode_chunk(self, clouds: Sequence[np.ndarray], dim: int, document: bool) -> np.ndarray:
        from scipy import sparse

        n, nparts = len(clouds), 1 << self.k_sim
        width = self.d_proj or dim
        pts = np.concatenate([np.asarray(c, dtype=np.float32) for c in clouds])
        lens = np.array([len(c) for c in clouds], dtype=np.int64)
        seg = np.repeat(np.arange(n), lens)
        out = np.zeros((n, self.r_reps, nparts, width), dtype=np.float32)
        for rep, (g, ams) in enumerate(self._matrices(dim)):
            bits = (pts @ g) > 0  # (T, k_sim)
            part = gray_partition(bits) if self.k_sim else np.zeros(len(pts), np.int64)
            proj = pts @ ams if ams is not None else pts
            key = seg * nparts + part
            member = sparse.csr_matrix(
                (np.ones(len(pts), np.float32), (key, np.arange(len(pts)))),
                shape=(n * nparts, len(pts)),
            )
            sums = np.asarray(member @ proj, dtype=np.float32)
            if document:
                counts = np.bincount(key, minlength=n * nparts).astype(np.float32)
                sums /= np.maximum(counts, 1.0)[:, None]
                if self.fill_empty and self.k_sim:
                    self._fill(sums, counts, bits, proj, seg, lens, nparts)
            out[:, rep] = sums.reshape(n, nparts, width)
        return out.reshape(n, -1)

    def _fill(
        self,
        sums: np.ndarray,
        counts: np.ndarray,
        bits: np.ndarray,
        proj: np.ndarray,
        seg: np.ndarray,
        lens: np.ndarray,
        nparts: int,
    ) -> None:
        """Give each empty partition of a non-empty document its nearest point (Hamming distance
        of sign bits to the partition's bits; the first point on ties)."""
        empty = np.flatnonzero((counts == 0) & (np.repeat(lens, nparts) > 0))
        if not len(empty):
            return
        doc, p = empty // nparts, empty % nparts
        # a partition index p holds the sign bits p ^ (p >> 1) (Google's GrayCodeToBinary)
        target = p ^ (p >> 1)
        code = bits_code(bits)
        starts = np.concatenate([[0], np.cumsum(lens)[:-1]])
        # distances of every point of the document to the target partition, for each empty slot
        owner = np.repeat(np.arange(len(empty)), lens[doc])
        slot_start = np.concatenate([[0], np.cumsum(lens[doc])[:-1]])
        flat = starts[doc][owner] + np.arange(len(owner)) - slot_start[owner]
        dist = _popcount(code[flat] ^ target[owner])
        # first minimum per slot: sort by (slot, distance, point index)
        order = np.lexsort((flat, dist, owner))
        first = np.concatenate([[0], np.flatnonzero(np.diff(owner[order])) + 1])
        sums[empty] = proj[flat[order][first]]
