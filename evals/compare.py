"""Compare several systems against a baseline, measure by measure, with corrected p-values."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Literal

from pydantic import BaseModel, ConfigDict

from evals.stats import (
    bonferroni,
    bootstrap_ci,
    holm,
    paired_scores,
    paired_t_test,
    randomization_test,
)
from rag.core.errors import ConfigError

PerQuery = Mapping[str, Mapping[str, float]]  # measure -> qid -> value


class Comparison(BaseModel):
    """One system against the baseline on one measure."""

    model_config = ConfigDict(frozen=True)
    system: str
    baseline: str
    measure: str
    mean: float
    baseline_mean: float
    delta: float
    ci_low: float  # bootstrap CI of the system's mean
    ci_high: float
    p_value: float
    p_adjusted: float
    significant: bool


def compare_systems(
    systems: Mapping[str, PerQuery],
    baseline: str,
    test: Literal["randomization", "t"] = "randomization",
    correction: Literal["holm", "bonferroni", "none"] = "holm",
    alpha: float = 0.05,
    n_permutations: int = 10_000,
    seed: int = 0,
) -> list[Comparison]:
    """Test every system against ``baseline`` on every measure they share.

    The correction runs over the whole family (all systems x measures). Each system's
    mean gets a bootstrap 95% CI.
    """
    if baseline not in systems:
        raise ConfigError(f"baseline {baseline!r} is not among the systems {sorted(systems)}")
    if test not in ("randomization", "t"):
        raise ConfigError(f"test must be 'randomization' or 't', got {test!r}")
    corrections: dict[str, Callable[[list[float]], list[float]]] = {
        "holm": holm,
        "bonferroni": bonferroni,
        "none": list,
    }
    if correction not in corrections:
        raise ConfigError(f"correction must be one of {sorted(corrections)}, got {correction!r}")
    rows = []
    base = systems[baseline]
    for name, per in systems.items():
        if name == baseline:
            continue
        for measure in (m for m in per if m in base):
            _, a, b = paired_scores(per[measure], base[measure])
            if test == "t":
                p = paired_t_test(a, b)
            else:
                p = randomization_test(a, b, n_permutations, seed)
            lo, hi = bootstrap_ci(a, seed=seed)
            rows.append((name, measure, float(a.mean()), float(b.mean()), lo, hi, p))
    adjusted = corrections[correction]([r[-1] for r in rows])
    return [
        Comparison(
            system=n,
            baseline=baseline,
            measure=m,
            mean=ma,
            baseline_mean=mb,
            delta=ma - mb,
            ci_low=lo,
            ci_high=hi,
            p_value=p,
            p_adjusted=pa,
            significant=pa < alpha,
        )
        for (n, m, ma, mb, lo, hi, p), pa in zip(rows, adjusted, strict=True)
    ]
