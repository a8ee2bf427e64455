"""Paired tests, corrections, bootstrap CIs, system comparison and ANN recall."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy import stats as sps

from evals.ann import ann_recall
from evals.compare import compare_systems
from evals.stats import (
    bonferroni,
    bootstrap_ci,
    holm,
    paired_scores,
    paired_t_test,
    randomization_test,
)
from rag.core.errors import ConfigError

RNG = np.random.default_rng(7)
A = RNG.random(12)
B = A - RNG.normal(0.08, 0.1, 12)


def test_t_test_equals_scipy() -> None:
    assert paired_t_test(A, B) == pytest.approx(sps.ttest_rel(A, B).pvalue, rel=1e-12)
    assert paired_t_test(A, A) == 1.0


def test_randomization_matches_exact_permutation_distribution() -> None:
    d = A - B
    obs = abs(d.mean())
    flips = np.array(list(itertools.product([-1, 1], repeat=len(d))))
    exact = float(np.mean(np.abs(flips @ d) / len(d) >= obs - 1e-12))
    p = randomization_test(A, B, n_permutations=20_000, seed=1)
    assert p == pytest.approx(exact, abs=0.01)
    assert randomization_test(A, B, seed=3) == randomization_test(A, B, seed=3)
    assert randomization_test(A, A) == 1.0


def test_randomization_agrees_with_scipy_permutation_test() -> None:
    res = sps.permutation_test(
        (A, B), lambda x, y: np.mean(x - y), permutation_type="samples", n_resamples=np.inf
    )
    assert randomization_test(A, B, n_permutations=20_000) == pytest.approx(res.pvalue, abs=0.01)


def test_corrections() -> None:
    p = [0.01, 0.04, 0.03, 0.20]
    assert bonferroni(p) == pytest.approx([0.04, 0.16, 0.12, 0.8])
    # Holm: sorted 0.01*4, 0.03*3, 0.04*2, 0.20*1, made monotone
    assert holm(p) == pytest.approx([0.04, 0.09, 0.09, 0.20])
    assert holm([0.5, 0.6]) == pytest.approx([1.0, 1.0])


def test_bootstrap_ci_brackets_the_mean() -> None:
    v = RNG.random(200)
    lo, hi = bootstrap_ci(v, seed=0)
    se = v.std(ddof=1) / np.sqrt(len(v))
    assert lo < v.mean() < hi
    assert hi - lo == pytest.approx(2 * 1.96 * se, rel=0.1)
    with pytest.raises(ConfigError):
        bootstrap_ci(v, confidence=1.5)


def test_paired_scores_and_compare_systems() -> None:
    qids = [f"q{i}" for i in range(12)]
    base = {"nDCG@10": dict(zip(qids, B, strict=True))}
    better = {"nDCG@10": dict(zip(qids, A, strict=True))}
    same = {"nDCG@10": dict(zip(qids, B, strict=True))}
    rows = compare_systems({"base": base, "new": better, "same": same}, "base", test="t")
    assert [r.system for r in rows] == ["new", "same"]
    new = rows[0]
    assert new.delta == pytest.approx(A.mean() - B.mean())
    assert new.p_adjusted == pytest.approx(min(1.0, 2 * new.p_value))  # Holm, smallest of two
    assert rows[1].p_value == 1.0 and not rows[1].significant
    with pytest.raises(ConfigError, match="same queries"):
        paired_scores({"a": 1.0}, {"b": 1.0})
    with pytest.raises(ConfigError, match="baseline"):
        compare_systems({"x": base}, "y")


def test_ann_recall() -> None:
    exact = {"q1": {"a": 0.9, "b": 0.8, "c": 0.7}, "q2": {"x": 1.0}}
    approx = {"q1": {"a": 0.9, "c": 0.7, "z": 0.1}, "q2": {"x": 1.0}}
    res = ann_recall(approx, exact, k=2)
    assert res.per_query == {"q1": 0.5, "q2": 1.0}
    assert res.mean == 0.75
    assert ann_recall(exact, exact, k=3).mean == 1.0
    with pytest.raises(ConfigError, match="missing from the ANN run"):
        ann_recall({"q1": {}}, exact, k=2)
