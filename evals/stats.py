"""Comparing systems on the same queries: paired tests, multiple-comparison correction, CIs.

All functions take per-query scores aligned on the same queries (``a[i]`` and ``b[i]`` are one
query), as :func:`paired_scores` builds them from two ``{qid: value}`` maps.

* :func:`paired_t_test`: Student's paired t-test, two-sided (``scipy.stats.ttest_rel``).
* :func:`randomization_test`: Fisher's two-sided paired randomisation (permutation) test, by
  random sign flips of the per-query differences (Smucker, Allan & Carterette, CIKM 2007).
  ``p = (1 + #{|mean(flipped)| >= |mean(observed)|}) / (1 + n_permutations)`` (never 0).
* :func:`holm` / :func:`bonferroni`: family-wise error corrections of a list of p-values.
* :func:`bootstrap_ci`: percentile bootstrap confidence interval of the mean.

>>> import numpy as np
>>> a, b = np.array([0.5, 0.7, 0.9, 0.4]), np.array([0.4, 0.6, 0.9, 0.1])
>>> round(paired_t_test(a, b), 4)
0.1411
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from rag.core.errors import ConfigError


def paired_scores(
    a: Mapping[str, float], b: Mapping[str, float]
) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Align two per-query maps; both must score exactly the same queries."""
    if set(a) != set(b):
        only_a, only_b = set(a) - set(b), set(b) - set(a)
        raise ConfigError(
            f"paired tests need the same queries: {len(only_a)} only in the first, "
            f"{len(only_b)} only in the second (e.g. {sorted(only_a | only_b)[0]!r})"
        )
    qids = sorted(a)
    return qids, np.array([a[q] for q in qids]), np.array([b[q] for q in qids])


def _check_pair(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1:
        raise ConfigError(
            f"paired scores must be 1-d and equal length, got {a.shape} and {b.shape}"
        )
    if len(a) < 2:
        raise ConfigError(f"paired tests need at least 2 queries, got {len(a)}")
    return a, b


def paired_t_test(a: np.ndarray, b: np.ndarray) -> float:
    """Two-sided p-value of the paired t-test; 1.0 when every difference is 0."""
    from scipy import stats

    a, b = _check_pair(a, b)
    d = a - b
    if np.all(d == d[0]):
        return 1.0 if d[0] == 0 else 0.0
    return float(stats.ttest_rel(a, b).pvalue)


def randomization_test(
    a: np.ndarray,
    b: np.ndarray,
    n_permutations: int = 10_000,
    seed: int = 0,
    chunk: int = 1_000,
) -> float:
    """Two-sided p-value of the paired randomisation test (sign flips of ``a - b``).

    Vectorised: flips are drawn ``chunk`` permutations at a time, ``(chunk, n)`` each.
    """
    if n_permutations < 1:
        raise ConfigError(f"n_permutations must be >= 1, got {n_permutations}")
    a, b = _check_pair(a, b)
    d = a - b
    observed = abs(d.mean())
    rng = np.random.default_rng(seed)
    at_least = 0
    done = 0
    tol = 1e-12 * max(1.0, observed)  # a flip equal to the observed mean counts (float noise)
    while done < n_permutations:
        m = min(chunk, n_permutations - done)
        signs = rng.integers(0, 2, size=(m, len(d)), dtype=np.int8) * 2 - 1
        means = np.abs(signs @ d) / len(d)
        at_least += int((means >= observed - tol).sum())
        done += m
    return (at_least + 1) / (n_permutations + 1)


def bonferroni(p_values: Sequence[float]) -> list[float]:
    """Bonferroni-adjusted p-values: ``min(1, m * p)``."""
    m = len(p_values)
    return [min(1.0, m * p) for p in p_values]


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm-Bonferroni step-down adjusted p-values (same order as the input)."""
    p = np.asarray(p_values, dtype=np.float64)
    m = len(p)
    order = np.argsort(p, kind="stable")
    adjusted = np.minimum(1.0, np.maximum.accumulate(p[order] * (m - np.arange(m))))
    out = np.empty(m)
    out[order] = adjusted
    return out.tolist()


def bootstrap_ci(
    values: np.ndarray,
    confidence: float = 0.95,
    n_resamples: int = 10_000,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap CI of the mean of ``values`` (queries resampled with replacement)."""
    if not 0 < confidence < 1:
        raise ConfigError(f"confidence must be in (0, 1), got {confidence}")
    v = np.asarray(values, dtype=np.float64)
    if v.ndim != 1 or len(v) == 0:
        raise ConfigError(f"bootstrap_ci needs a non-empty 1-d array, got shape {v.shape}")
    rng = np.random.default_rng(seed)
    means = np.empty(n_resamples)
    step = max(1, 4_000_000 // len(v))
    for start in range(0, n_resamples, step):
        stop = min(n_resamples, start + step)
        idx = rng.integers(0, len(v), size=(stop - start, len(v)))
        means[start:stop] = v[idx].mean(axis=1)
    alpha = (1 - confidence) / 2
    lo, hi = np.quantile(means, [alpha, 1 - alpha])
    return float(lo), float(hi)


def wilson_ci(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion (Wilson 1927):

        (p + z^2/2n -+ z sqrt(p(1-p)/n + z^2/4n^2)) / (1 + z^2/n),   p = successes / n.

    >>> [round(x, 4) for x in wilson_ci(8, 10)]
    [0.4902, 0.9433]
    """
    from scipy import stats

    if not 0 < confidence < 1:
        raise ConfigError(f"confidence must be in (0, 1), got {confidence}")
    if n < 1 or not 0 <= successes <= n:
        raise ConfigError(f"need 0 <= successes <= n and n >= 1, got {successes}, {n}")
    z = float(stats.norm.ppf(1 - (1 - confidence) / 2))
    p = successes / n
    centre = p + z * z / (2 * n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    den = 1 + z * z / n
    return float((centre - half) / den), float((centre + half) / den)
