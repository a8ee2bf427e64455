"""Rank fusion: reciprocal-rank fusion and score-normalised combination.

RRF (Cormack, Clarke & Buettcher, SIGIR 2009): ``score(d) = sum_i w_i / (k + rank_i(d))`` with
ranks starting at 1 and ``k = 60``. CombSUM over normalised scores (Fox & Shaw 1994; min-max or
z-score per ranking): ``score(d) = sum_i w_i * norm_i(s_i(d))``, a missing document contributing 0.

Both are order-independent: permuting the input rankings (with their weights) gives the same
output, ties broken by document id. The first ranking's Document object is kept for each id.

The kernels work on arrays (:class:`rag.core.types.ScoredIds`, ids best first with their scores):
:func:`rrf_arrays` and :func:`combsum_arrays` return the fused ids and scores, and only the top
``k`` fused hits become :class:`~rag.core.types.Hit` objects (``Ranking.from_arrays``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from rag.core.errors import ConfigError
from rag.core.types import Document, Ranking, ScoredIds, shared_source

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
    fused = rrf_arrays([r.arrays() for r in rankings], _weights(rankings, weights), rrf_k)
    return Ranking.from_arrays(
        rankings[0].query, fused.ids, fused.scores, _documents(rankings), k, "rrf"
    )


def _documents(rankings: Sequence[Ranking]) -> Mapping[str, Document]:
    """id -> Document: the store the rankings all read from when they share one (a composite's
    children: no candidate's document is read, only the fused top's), else the first ranking's
    object for each id."""
    shared = shared_source(rankings)
    if shared is not None:
        return shared
    docs: dict[str, Document] = {}
    for r in reversed(rankings):  # Ranking.documents: no Hit objects built
        docs.update((d.id, d) for d in reversed(r.documents()))
    return docs


def rrf_arrays(lists: Sequence[ScoredIds], weights: Sequence[float], rrf_k: int = 60) -> ScoredIds:
    """RRF of ranked id lists (each best first; a repeated id counts at each rank it holds):
    the fused ids (unique, any order) and their float64 scores, by :func:`rrf_sums`."""
    scores = rrf_sums([x.ids for x in lists], weights, rrf_k)
    return ScoredIds(list(scores), np.fromiter(scores.values(), np.float64, len(scores)))


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
    fused = combsum_arrays([r.arrays() for r in rankings], _weights(rankings, weights), norm)
    return Ranking.from_arrays(
        rankings[0].query, fused.ids, fused.scores, _documents(rankings), k, norm
    )


def combsum_arrays(lists: Sequence[ScoredIds], weights: Sequence[float], norm: str) -> ScoredIds:
    """CombSUM of per-list normalised scores (:func:`normalize`): the fused ids (unique, any
    order) and their float64 scores; a repeated id adds each of its scores."""
    scores: dict[str, float] = {}
    get = scores.get
    for x, w in zip(lists, weights):
        ns = normalize(np.asarray(x.scores, dtype=np.float64), norm)
        for i, v in zip(x.ids, (w * ns).tolist()):
            scores[i] = get(i, 0.0) + v
    return ScoredIds(list(scores), np.fromiter(scores.values(), np.float64, len(scores)))
