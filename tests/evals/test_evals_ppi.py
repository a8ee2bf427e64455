"""Prediction-powered inference and the Wilson interval against closed forms computed by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from evals.ppi import classical_mean_ci, power_tuned_lambda, ppi_experiment, ppi_mean_ci
from evals.stats import wilson_ci
from rag.core.errors import ConfigError

Y = np.array([1.0, 0.0, 1.0, 0.0])
F = np.array([0.8, 0.2, 0.6, 0.4])
FU = np.array([0.9, 0.1, 0.5, 0.7, 0.3])
Z = 1.959963984540054


def test_ppi_matches_hand_computed_closed_form():
    # mean(FU) = 0.5; rectifier F - Y = [-.2, .2, -.4, .4]: mean 0, var (ddof 1) = 0.4 / 3
    # var(FU) = 0.4 / 4 = 0.1  ->  se = sqrt(0.1 / 5 + (0.4 / 3) / 4)
    ci = ppi_mean_ci(Y, F, FU)
    se = math.sqrt(0.1 / 5 + (0.4 / 3) / 4)
    assert ci.estimate == pytest.approx(0.5)
    assert ci.lo == pytest.approx(0.5 - Z * se)
    assert ci.hi == pytest.approx(0.5 + Z * se)
    assert (ci.n_labelled, ci.n_unlabelled, ci.lam) == (4, 5, 1.0)


def test_perfect_judge_gives_classical_ci_of_the_unlabelled_truth():
    rng = np.random.default_rng(0)
    y_lab, y_unl = rng.integers(0, 2, 30).astype(float), rng.integers(0, 2, 300).astype(float)
    ppi = ppi_mean_ci(y_lab, y_lab, y_unl)
    ref = classical_mean_ci(y_unl)
    assert (ppi.estimate, ppi.lo, ppi.hi) == pytest.approx((ref.estimate, ref.lo, ref.hi))


def test_lambda_zero_is_the_classical_interval():
    ppi = ppi_mean_ci(Y, F, FU, lam=0.0)
    ref = classical_mean_ci(Y)
    assert (ppi.estimate, ppi.lo, ppi.hi) == pytest.approx((ref.estimate, ref.lo, ref.hi))
    half = Z * math.sqrt(Y.var(ddof=1) / 4)
    assert ref.hi == pytest.approx(0.5 + half)


def test_power_tuned_lambda_closed_form():
    # cov(Y, F) = 0.4 / 3; var of all 9 judge scores = 0.6 / 8; n / N = 4 / 5
    expected = (0.4 / 3) / ((1 + 4 / 5) * (0.6 / 8))
    assert power_tuned_lambda(F, Y, FU) == pytest.approx(expected)
    assert ppi_mean_ci(Y, F, FU, lam="auto").lam == pytest.approx(expected)


def test_ppi_covers_at_nominal_rate_and_beats_classical_with_a_good_judge():
    rng = np.random.default_rng(1)
    truth_p, n, big_n, trials = 0.3, 40, 400, 1500
    cover = {"classical": 0, "ppi": 0}
    widths = {"classical": [], "ppi": []}
    for _ in range(trials):
        y = (rng.random(n + big_n) < truth_p).astype(float)
        f = np.where(rng.random(n + big_n) < 0.9, y, 1 - y) * 0.8 + 0.1  # 90% right, biased
        for key, ci in (
            ("classical", classical_mean_ci(y[:n])),
            ("ppi", ppi_mean_ci(y[:n], f[:n], f[n:])),
        ):
            cover[key] += ci.lo <= truth_p <= ci.hi
            widths[key].append(ci.width)
    assert 0.92 <= cover["ppi"] / trials <= 0.975
    assert np.mean(widths["ppi"]) < 0.8 * np.mean(widths["classical"])


def test_ppi_experiment_reports_all_three_intervals():
    rng = np.random.default_rng(2)
    y = rng.integers(0, 2, 100).astype(float)
    out = ppi_experiment(y, y * 0.9 + 0.05, n_labelled=20)
    assert {"classical", "ppi", "ppi++"} <= set(out)
    assert out["true_mean_all_labels"] == pytest.approx(y.mean())
    assert out["ppi"]["n_unlabelled"] == 80


def test_ppi_input_errors():
    with pytest.raises(ConfigError, match="align"):
        ppi_mean_ci(Y, F[:3], FU)
    with pytest.raises(ConfigError, match="lam"):
        ppi_mean_ci(Y, F, FU, lam=2)
    with pytest.raises(ConfigError, match="at least 2"):
        classical_mean_ci([1.0])


@pytest.mark.parametrize("k,n", [(0, 10), (8, 10), (10, 10), (57, 209)])
def test_wilson_matches_scipy(k, n):
    from scipy.stats import binomtest

    ref = binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
    assert wilson_ci(k, n) == pytest.approx((ref.low, ref.high))
