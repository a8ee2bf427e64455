"""Relevance filtering after reranking: a calibrated per-query score mapping and a global cut.

After Rossi et al. 2024, "Relevance Filtering for Embedding-based Retrieval" (CIKM, the "Cosine
Adapter", arXiv:2408.04887): raw scores are hard to compare across queries, so each query's scores
are mapped by a query-dependent monotone function to an interpretable score, and one global
threshold filters every query. The Cosine Adapter predicts the mapping's parameters from the query
embedding with a small network; this node has no query encoder and instead makes the mapping
query-dependent through the query's own score distribution:

    p(d | q) = sigmoid(w1 * z(s) + w2 * m(s) + w3 * s + b),  w1, w2, w3 >= 0

with ``s`` the reranker's score, ``z(s) = (s - mean_q) / std_q`` and
``m(s) = (s - min_q) / (max_q - min_q)`` over the query's candidates. ``w`` and ``b`` are fitted by
L2-regularised logistic regression on judged queries (:meth:`fit`); the non-negative weights keep
the mapping monotone, so the reranker's order is never changed. The global threshold is chosen on
the same queries to maximise F1 of the kept set, or as the lowest one reaching a target precision.

Adaptive top-k: a query keeps the hits with ``p >= threshold``, at most ``max_k`` (or the ``k``
passed to ``rerank``) and at least ``min_k``. Output scores are the calibrated ``p``.

>>> f = RelevanceFilter().fit(train_rankings, train_qrels)           # doctest: +SKIP
>>> f.rerank(reranked, k=10)                                        # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import ClassVar

import numpy as np

from rag.core.errors import ConfigError
from rag.core.nodes import BaseReranker, check_k
from rag.core.types import Ranking

Qrels = Mapping[str, Mapping[str, int]]


def features(scores: np.ndarray) -> np.ndarray:
    """``scores: (N,)`` of one query -> ``(N, 4)``: z-score, min-max, raw score, 1."""
    s = np.asarray(scores, dtype=np.float64)
    if s.size == 0:
        return np.zeros((0, 4))
    std, span = s.std(), s.max() - s.min()
    z = (s - s.mean()) / std if std > 1e-12 else np.zeros_like(s)
    m = (s - s.min()) / span if span > 1e-12 else np.ones_like(s)
    return np.stack([z, m, s, np.ones_like(s)], axis=1)


def _fit_logistic(x: np.ndarray, y: np.ndarray, l2: float) -> np.ndarray:
    """Class-balanced logistic regression, score weights bounded at >= 0 (monotone mapping)."""
    from scipy.optimize import minimize

    pos = max(float(y.sum()), 1.0)
    neg = max(float(len(y) - y.sum()), 1.0)
    sw = np.where(y > 0, len(y) / (2 * pos), len(y) / (2 * neg))

    def loss(w: np.ndarray) -> tuple[float, np.ndarray]:
        t = x @ w
        # log(1 + e^t) - y t, stably
        val = np.sum(sw * (np.logaddexp(0, t) - y * t)) / len(y) + l2 * np.sum(w[:-1] ** 2)
        p = 1.0 / (1.0 + np.exp(-t))
        grad = x.T @ (sw * (p - y)) / len(y)
        grad[:-1] += 2 * l2 * w[:-1]
        return float(val), grad

    bounds = [(0.0, None)] * (x.shape[1] - 1) + [(None, None)]
    res = minimize(loss, np.zeros(x.shape[1]), jac=True, method="L-BFGS-B", bounds=bounds)
    return res.x


def set_quality(rankings: Sequence[Ranking], qrels: Qrels) -> dict[str, float]:
    """Micro precision / recall / F1 of the kept hits against every judged relevant document,
    and the mean number kept per query (queries without judgments are skipped)."""
    tp = kept = rel = 0
    n = 0
    for r in rankings:
        judged = qrels.get(r.query.id)
        if judged is None:
            continue
        relevant = {d for d, g in judged.items() if g > 0}
        tp += sum(1 for h in r.hits if h.id in relevant)
        kept += len(r.hits)
        rel += len(relevant)
        n += 1
    p = tp / kept if kept else 0.0
    rc = tp / rel if rel else 0.0
    f1 = 2 * p * rc / (p + rc) if p + rc else 0.0
    return {"precision": p, "recall": rc, "f1": f1, "mean_kept": kept / n if n else 0.0}


class RelevanceFilter(BaseReranker):
    """Map scores to calibrated relevance probabilities per query and cut at a global threshold.

    Args:
        weights: ``[w_z, w_minmax, w_raw, bias]``; set by :meth:`fit` (default: plain z-score).
        threshold: keep hits with calibrated ``p >= threshold``.
        max_k: keep at most this many per query (``None``: no cap beyond ``rerank``'s ``k``).
        min_k: always keep at least this many (0 allows an empty result).
    """

    name: ClassVar[str] = "relevance_filter"

    def __init__(
        self,
        weights: Sequence[float] | None = None,
        threshold: float = 0.5,
        max_k: int | None = None,
        min_k: int = 0,
    ) -> None:
        w = [1.0, 0.0, 0.0, 0.0] if weights is None else [float(x) for x in weights]
        if len(w) != 4 or any(x < 0 for x in w[:3]):
            raise ConfigError(f"weights must be 4 numbers with the first 3 >= 0, got {weights!r}")
        if not 0.0 <= threshold <= 1.0:
            raise ConfigError(f"threshold must be in [0, 1], got {threshold}")
        if max_k is not None:
            check_k(max_k)
        if isinstance(min_k, bool) or not isinstance(min_k, int) or min_k < 0:
            raise ConfigError(f"min_k must be an int >= 0, got {min_k!r}")
        self.weights = w
        self.threshold = float(threshold)
        self.max_k = max_k
        self.min_k = min_k

    def calibrate(self, scores: Sequence[float]) -> np.ndarray:
        """One query's scores ``(N,)`` -> calibrated relevance probabilities ``(N,)``."""
        t = features(np.asarray(scores, dtype=np.float64)) @ np.asarray(self.weights)
        return 1.0 / (1.0 + np.exp(-t))

    def fit(
        self,
        rankings: Sequence[Ranking],
        qrels: Qrels,
        target_precision: float | None = None,
        l2: float = 1e-3,
    ) -> RelevanceFilter:
        """Fit the mapping and the threshold on judged rankings (queries without qrels are
        skipped). Sets ``weights`` and ``threshold`` and returns ``self``."""
        xs, ys, groups = [], [], []
        for r in rankings:
            judged = qrels.get(r.query.id)
            if judged is None or not r.hits:
                continue
            xs.append(features(np.array(r.scores)))
            ys.append(np.array([1.0 if judged.get(h.id, 0) > 0 else 0.0 for h in r.hits]))
            groups.append(sum(1 for g in judged.values() if g > 0))
        if not xs or not np.concatenate(ys).any():
            raise ConfigError("fit needs judged rankings that contain at least one relevant hit")
        x, y = np.concatenate(xs), np.concatenate(ys)
        self.weights = [float(v) for v in _fit_logistic(x, y, l2)]
        p = 1.0 / (1.0 + np.exp(-(x @ np.asarray(self.weights))))
        self.threshold = _pick_threshold(p, y, sum(groups), target_precision)
        return self

    def _score_batch(self, rankings: Sequence[Ranking]) -> list[Sequence[float]]:
        """Each ranking's own scores mapped to calibrated probabilities; the base then keeps
        ``p >= threshold`` (at least ``min_k``, at most ``max_k`` / ``k``). The mapping is
        monotone, so the order is the input's (up to ties of saturated ``p``)."""
        return [self.calibrate(r.scores).tolist() for r in rankings]


def _pick_threshold(
    p: np.ndarray, y: np.ndarray, n_relevant: int, target_precision: float | None
) -> float:
    """Threshold on ``p`` that maximises F1 (recall over all ``n_relevant`` judged documents),
    or the lowest one whose precision reaches ``target_precision``."""
    order = np.argsort(-p, kind="stable")
    tp = np.cumsum(y[order])
    kept = np.arange(1, len(p) + 1)
    precision = tp / kept
    recall = tp / max(n_relevant, 1)
    # a threshold equal to p[order[i]] keeps everything with p >= it; use the last index of ties
    last = np.r_[p[order][1:] != p[order][:-1], True]
    if target_precision is not None:
        ok = np.flatnonzero(last & (precision >= target_precision))
        if ok.size == 0:
            return float(p.max())
        return float(p[order][ok[-1]])
    f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall + 1e-12), 0)
    f1 = np.where(last, f1, -1.0)
    return float(p[order][int(np.argmax(f1))])
