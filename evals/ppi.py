"""Prediction-powered inference (PPI) for a system's mean score: a few human labels plus a judge.

Angelopoulos, Bates, Fannjiang, Jordan & Zrnic, "Prediction-powered inference", Science 2023;
used by ARES (Saad-Falcon et al., NAACL 2024) to turn an LLM judge's verdicts on many examples
and human labels on a few into a confidence interval for the true score.

With ``n`` labelled examples ``(f_i, y_i)`` (judge score, human label) and ``N`` unlabelled
judge scores ``f~_j``, the PPI mean estimate and its normal-approximation interval are

    theta_PP = mean(f~) - mean(f - y)                         (the "rectifier" removes judge bias)
    CI       = theta_PP -+ z_{1-a/2} sqrt(var(f~) / N + var(f - y) / n)

and the classical interval from the labels alone is ``mean(y) -+ z sqrt(var(y) / n)``.
PPI++ (Angelopoulos, Duchi & Zrnic 2023) weights the judge by ``lam``:
``theta = mean(y) + lam (mean(f~) - mean(f))`` with variance
``lam^2 var(f~)/N + var(y - lam f)/n``, and the power-tuned
``lam* = cov(y, f) / ((1 + n/N) var(f_all))`` (clipped to [0, 1]); ``lam=1`` is plain PPI and
``lam=0`` the classical interval. Sample variances use ``ddof=1``.

>>> ci = ppi_mean_ci([1, 0, 1, 1], [1, 0, 1, 1], [1, 1, 0, 1, 0, 1])   # a perfect judge
>>> round(ci.estimate, 4)
0.6667
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from rag.core.errors import ConfigError


@dataclass(frozen=True)
class MeanCI:
    """A mean estimate with its ``confidence`` interval ``[lo, hi]``."""

    method: str
    estimate: float
    lo: float
    hi: float
    confidence: float
    n_labelled: int
    n_unlabelled: int = 0
    lam: float | None = None

    @property
    def width(self) -> float:
        return self.hi - self.lo

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "width": self.width}


def _z(confidence: float) -> float:
    from scipy import stats

    if not 0 < confidence < 1:
        raise ConfigError(f"confidence must be in (0, 1), got {confidence}")
    return float(stats.norm.ppf(1 - (1 - confidence) / 2))


def _vec(x: Sequence[float] | np.ndarray, name: str, min_len: int = 2) -> np.ndarray:
    v = np.asarray(x, dtype=np.float64)
    if v.ndim != 1 or len(v) < min_len:
        raise ConfigError(f"{name} must be 1-d with at least {min_len} values, got {v.shape}")
    if not np.all(np.isfinite(v)):
        raise ConfigError(f"{name} contains NaN or infinite values")
    return v


def classical_mean_ci(y: Sequence[float] | np.ndarray, confidence: float = 0.95) -> MeanCI:
    """Normal-approximation interval of the mean of human labels alone."""
    y = _vec(y, "y")
    half = _z(confidence) * np.sqrt(y.var(ddof=1) / len(y))
    m = float(y.mean())
    return MeanCI("classical", m, m - half, m + half, confidence, len(y))


def power_tuned_lambda(f_labelled: np.ndarray, y: np.ndarray, f_unlabelled: np.ndarray) -> float:
    """PPI++'s variance-minimising weight for mean estimation, clipped to [0, 1]."""
    n, big_n = len(y), len(f_unlabelled)
    var_f = np.concatenate([f_labelled, f_unlabelled]).var(ddof=1)
    if var_f == 0:
        return 0.0
    cov = np.cov(y, f_labelled, ddof=1)[0, 1]
    return float(np.clip(cov / ((1 + n / big_n) * var_f), 0.0, 1.0))


def ppi_mean_ci(
    y: Sequence[float] | np.ndarray,
    f_labelled: Sequence[float] | np.ndarray,
    f_unlabelled: Sequence[float] | np.ndarray,
    confidence: float = 0.95,
    lam: float | str = 1.0,
) -> MeanCI:
    """PPI (``lam=1``), PPI++ (``lam="auto"``) or any fixed ``lam`` in [0, 1].

    Args:
        y: human labels of the labelled examples ``(n,)``.
        f_labelled: the judge's scores on those same examples ``(n,)``.
        f_unlabelled: the judge's scores on the unlabelled examples ``(N,)``.
    """
    y = _vec(y, "y")
    f = _vec(f_labelled, "f_labelled")
    fu = _vec(f_unlabelled, "f_unlabelled")
    if len(f) != len(y):
        raise ConfigError(f"y and f_labelled must align, got {len(y)} and {len(f)}")
    if lam == "auto":
        weight = power_tuned_lambda(f, y, fu)
    elif isinstance(lam, (int, float)) and not isinstance(lam, bool) and 0 <= lam <= 1:
        weight = float(lam)
    else:
        raise ConfigError(f"lam must be a number in [0, 1] or 'auto', got {lam!r}")
    est = float(y.mean() + weight * (fu.mean() - f.mean()))
    var = weight**2 * fu.var(ddof=1) / len(fu) + (y - weight * f).var(ddof=1) / len(y)
    half = _z(confidence) * np.sqrt(var)
    method = "ppi" if lam == 1.0 else f"ppi++(lam={weight:.3f})"
    return MeanCI(method, est, est - half, est + half, confidence, len(y), len(fu), weight)


def ppi_experiment(
    y: Sequence[float] | np.ndarray,
    f: Sequence[float] | np.ndarray,
    n_labelled: int,
    confidence: float = 0.95,
    seed: int = 0,
) -> dict[str, Any]:
    """ARES-style check on a fully labelled set: keep the labels of ``n_labelled`` random
    examples, give the judge the rest, and compare the PPI / PPI++ intervals with the classical
    one from the same labels, and with the mean of all labels (the truth being estimated)."""
    y, f = _vec(y, "y"), _vec(f, "f")
    if len(y) != len(f):
        raise ConfigError(f"y and f must align, got {len(y)} and {len(f)}")
    if not 2 <= n_labelled <= len(y) - 2:
        raise ConfigError(f"n_labelled must be in [2, {len(y) - 2}], got {n_labelled}")
    idx = np.random.default_rng(seed).permutation(len(y))
    lab, unl = idx[:n_labelled], idx[n_labelled:]
    out: dict[str, Any] = {
        "true_mean_all_labels": float(y.mean()),
        "judge_mean_uncalibrated": float(f.mean()),
        "n_labelled": n_labelled,
        "n_unlabelled": len(unl),
    }
    for ci in (
        classical_mean_ci(y[lab], confidence),
        ppi_mean_ci(y[lab], f[lab], f[unl], confidence, lam=1.0),
        ppi_mean_ci(y[lab], f[lab], f[unl], confidence, lam="auto"),
    ):
        key = ci.method.split("(")[0]
        out[key] = {**ci.to_dict(), "covers_truth": bool(ci.lo <= y.mean() <= ci.hi)}
    return out
