"""Interpolation vs extrapolation: split a collection's queries by their similarity to a reference
query set (typically the training queries) and score each part separately.

Zhan, Xie, Mao, Liu, Zhang, Ma & Zhang, "Evaluating Interpolation and Extrapolation Performance
of Neural Retrieval Models", CIKM 2022: most test queries of popular benchmarks have a near
duplicate among the training queries, so one figure mixes *interpolation* (queries like those
seen) with *extrapolation* (queries unlike them). Their protocol resamples test queries by query
similarity; here each evaluated query ``q`` gets

    s(q) = max_{r in reference} cos(v_q, v_r)

(``v`` any query embedding, e.g. MiniLM), and the queries with the highest ``s`` form the
interpolation part, those with the lowest the extrapolation part (``fraction`` of the queries
each; with ``fraction=0.5`` the split is at the median). Queries whose id is also in the
reference set are left out (a query is not evidence of its own interpolation).

>>> import numpy as np
>>> q = np.array([[1.0, 0.0], [0.0, 1.0]]); ref = np.array([[1.0, 0.1]])
>>> similarity_split(["a", "b"], q, ref).interpolation
['a']
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from rag.core.errors import ConfigError


@dataclass(frozen=True)
class QuerySplit:
    """Query ids of both parts and every query's nearest-reference similarity."""

    interpolation: list[str]
    extrapolation: list[str]
    similarity: dict[str, float]
    fraction: float

    def summary(self) -> dict[str, Any]:
        def mean(ids: list[str]) -> float:
            return float(np.mean([self.similarity[q] for q in ids])) if ids else float("nan")

        return {
            "n_interpolation": len(self.interpolation),
            "n_extrapolation": len(self.extrapolation),
            "mean_max_cos_interpolation": round(mean(self.interpolation), 4),
            "mean_max_cos_extrapolation": round(mean(self.extrapolation), 4),
        }


def _normalise(v: np.ndarray, name: str) -> np.ndarray:
    v = np.asarray(v, dtype=np.float64)
    if v.ndim != 2 or len(v) == 0:
        raise ConfigError(f"{name} must be a non-empty (n, d) array, got shape {v.shape}")
    norms = np.linalg.norm(v, axis=1, keepdims=True)
    return v / np.where(norms == 0, 1.0, norms)


def max_similarity(queries: np.ndarray, reference: np.ndarray, chunk: int = 1024) -> np.ndarray:
    """``s(q)`` for each row of ``queries (n, d)`` against ``reference (m, d)`` -> ``(n,)``."""
    q, r = _normalise(queries, "queries"), _normalise(reference, "reference")
    if q.shape[1] != r.shape[1]:
        raise ConfigError(f"dimensions differ: queries {q.shape[1]}, reference {r.shape[1]}")
    return np.concatenate([(q[i : i + chunk] @ r.T).max(axis=1) for i in range(0, len(q), chunk)])


def similarity_split(
    ids: Sequence[str],
    query_vectors: np.ndarray,
    reference_vectors: np.ndarray,
    fraction: float = 0.5,
    reference_ids: Sequence[str] = (),
) -> QuerySplit:
    """Split ``ids`` (rows of ``query_vectors (n, d)``) into the ``fraction`` most and least
    similar to the reference set (ties broken by id, so the split is deterministic)."""
    if not 0 < fraction <= 0.5:
        raise ConfigError(f"fraction must be in (0, 0.5], got {fraction}")
    if len(ids) != len(query_vectors):
        raise ConfigError(f"{len(ids)} ids for {len(query_vectors)} query vectors")
    sims = max_similarity(query_vectors, reference_vectors)
    drop = set(reference_ids)
    rows = sorted(
        ((float(s), str(q)) for q, s in zip(ids, sims, strict=True) if q not in drop),
        key=lambda t: (-t[0], t[1]),
    )
    m = int(len(rows) * fraction)
    if m < 1:
        raise ConfigError(f"too few queries ({len(rows)}) for fraction {fraction}")
    return QuerySplit(
        interpolation=[q for _, q in rows[:m]],
        extrapolation=[q for _, q in rows[-m:]],
        similarity={q: s for s, q in rows},
        fraction=fraction,
    )


def score_split(per_query: Mapping[str, float], split: QuerySplit) -> dict[str, Any]:
    """Mean of one measure on each part with bootstrap 95% CIs, side by side."""
    from evals.stats import bootstrap_ci

    out: dict[str, Any] = {}
    for part in ("interpolation", "extrapolation"):
        ids = getattr(split, part)
        missing = [q for q in ids if q not in per_query]
        if missing:
            raise ConfigError(f"{len(missing)} {part} queries have no score (e.g. {missing[0]!r})")
        vals = np.array([per_query[q] for q in ids])
        lo, hi = bootstrap_ci(vals)
        out[part] = {"mean": round(float(vals.mean()), 4), "ci95": [round(lo, 4), round(hi, 4)]}
    out["gap"] = round(out["interpolation"]["mean"] - out["extrapolation"]["mean"], 4)
    return out
