"""Rank fusion: reciprocal-rank fusion and score-normalised combination.

RRF (Cormack, Clarke & Buettcher, SIGIR 2009): ``score(d) = sum_i w_i / (k + rank_i(d))`` with
ranks starting at 1 and ``k = 60``. CombSUM over normalised scores (Fox & Shaw 1994; min-max or
z-score per ranking): ``score(d) = sum_i w_i * norm_i(s_i(d))``, a missing document contributing 0.

Both are order-independent: permuting the input rankings (with their weights) gives the same
output, ties broken by document id. The first ranking's Document object is kept for each id.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from rag.errors import ConfigError
from rag.types import Document, Ranking

NORMS = ("minmax", "zscore", "none")


def _weights(rankings: Sequence[Ranking], weights: Sequence[float] | None) -> list[float]:
    if weights is None:
        return [1.0] * len(rankings)
    if len(weights) != len(rankings):
        raise ConfigError(f"got {len(weights)} weights for {len(rankings)} rankings")
    return [float(w) for w in weights]


def rrf_sums(
    keys: Sequence[Sequence[str]], weights: Sequence[float] | None = None, rrf_k: int = 60
) -> dict[str, float]:
    """The one reciprocal-rank sum: ``sum_i w_i / (rrf_k + rank_i)`` per key, over every
    occurrence of the key in each list of ``keys`` (ranks from 1), in first-seen order. Fusion
    passes each ranking's document ids; grouping chunks by parent passes one list of parent ids
    (:func:`retrievers.parents.group_by_parent`, ``how="rrf"``).

    >>> rrf_sums([["a", "b"], ["b"]], rrf_k=0)
    {'a': 1.0, 'b': 1.5}
    """
    if rrf_k < 0:
        raise ConfigError(f"rrf_k must be >= 0, got {rrf_k}")
    ws = [1.0] * len(keys) if weights is None else [float(w) for w in weights]
    scores: dict[str, float] = {}
    for ks, w in zip(keys, ws, strict=True):
        for rank, key in enumerate(ks, 1):
            scores[key] = scores.get(key, 0.0) + w / (rrf_k + rank)
    return scores


def rrf(
    rankings: Sequence[Ranking],
    k: int | None = None,
    weights: Sequence[float] | None = None,
    rrf_k: int = 60,
) -> Ranking:
    """Reciprocal-rank fusion of rankings for the same query."""
    if not rankings:
        raise ConfigError("rrf needs at least one ranking")
    ws = _weights(rankings, weights)
    scores = rrf_sums([r.ids for r in rankings], ws, rrf_k)
    docs: dict[str, Document] = {}
    for r in rankings:
        for h in r.hits:
            docs.setdefault(h.id, h.document)
    return Ranking.from_scored(
        rankings[0].query, ((docs[i], s) for i, s in scores.items()), k, "rrf"
    )


def normalize(scores: np.ndarray, method: str) -> np.ndarray:
    if method == "none" or len(scores) == 0:
        return scores
    if method == "minmax":
        lo, hi = scores.min(), scores.max()
        return np.ones_like(scores) if hi == lo else (scores - lo) / (hi - lo)
    sd = scores.std()
    return np.zeros_like(scores) if sd == 0 else (scores - scores.mean()) / sd


def score_fusion(
    rankings: Sequence[Ranking],
    k: int | None = None,
    weights: Sequence[float] | None = None,
    norm: str = "minmax",
) -> Ranking:
    """CombSUM of per-ranking normalised scores."""
    if not rankings:
        raise ConfigError("score_fusion needs at least one ranking")
    if norm not in NORMS:
        raise ConfigError(f"norm must be one of {NORMS}, got {norm!r}")
    ws = _weights(rankings, weights)
    scores: dict[str, float] = {}
    docs: dict[str, Document] = {}
    for r, w in zip(rankings, ws):
        ns = normalize(np.asarray(r.scores, dtype=np.float64), norm)
        for h, s in zip(r.hits, ns):
            scores[h.id] = scores.get(h.id, 0.0) + w * float(s)
            docs.setdefault(h.id, h.document)
    return Ranking.from_scored(
        rankings[0].query, ((docs[i], s) for i, s in scores.items()), k, norm
    )
