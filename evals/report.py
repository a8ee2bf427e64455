"""Reports of one or more :class:`~evals.harness.EvalResult` s: JSON, Markdown and HTML.

* :func:`to_json`: everything measured (per-query values included), for machines.
* :func:`to_markdown`: tables to paste into a README: one row per system (final stage), one
  per stage, latency, and the significance tests when there are several systems.
* :func:`to_html` (in :mod:`evals.html`): a self-contained page with embedded matplotlib plots.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from evals.compare import Comparison
from evals.harness import EvalResult


def to_json(
    results: Sequence[EvalResult], comparisons: Sequence[Comparison] = (), indent: int = 2
) -> str:
    payload: dict[str, Any] = {
        "results": [r.model_dump(mode="json") for r in results],
        "comparisons": [c.model_dump(mode="json") for c in comparisons],
    }
    return json.dumps(payload, indent=indent)


def _fmt(v: float) -> str:
    return f"{v:.4f}"


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def _latency(r: EvalResult) -> list[str]:
    """p50, p95 and qps; ``-`` for a scored run file (no latency was measured)."""
    lat = r.latency
    if lat is None:
        return ["-", "-", "-"]
    return [f"{lat.p50_ms:.1f}", f"{lat.p95_ms:.1f}", f"{lat.qps:.1f}"]


def to_markdown(results: Sequence[EvalResult], comparisons: Sequence[Comparison] = ()) -> str:
    if not results:
        return "_no results_\n"
    first = results[0]
    measures = first.measures
    parts = [
        f"## {first.dataset} ({first.split}), k={first.k}",
        "",
        _table(
            ["system", *measures, "p50 ms", "p95 ms", "qps"],
            [
                [
                    r.system,
                    *(_fmt(r.aggregate.get(m, float("nan"))) for m in measures),
                    *_latency(r),
                ]
                for r in results
            ],
        ),
    ]
    staged = [r for r in results if len(r.stages) > 1 or _has_survival(r)]
    if staged:
        rows = []
        for r in staged:
            for name, st in r.stages.items():
                surv = "-" if st.survival is None else _fmt(st.survival)
                rows.append([r.system, name, *(_fmt(st.aggregate[m]) for m in measures), surv])
        parts += [
            "",
            "### Per stage",
            "",
            _table(["system", "stage", *measures, "content kept"], rows),
        ]
    if comparisons:
        rows = [
            [
                c.system,
                c.baseline,
                c.measure,
                _fmt(c.mean),
                f"{c.delta:+.4f}",
                f"[{_fmt(c.ci_low)}, {_fmt(c.ci_high)}]",
                f"{c.p_value:.4g}",
                f"{c.p_adjusted:.4g}",
                "yes" if c.significant else "no",
            ]
            for c in comparisons
        ]
        header = [
            "system",
            "baseline",
            "measure",
            "mean",
            "delta",
            "95% CI (mean)",
            "p",
            "p adj.",
            "sig.",
        ]
        parts += ["", "### Significance", "", _table(header, rows)]
    notes = []
    for r in results:
        cov = r.stages[r.final_stage].coverage
        notes.append(f"- {r.system}: {cov.summary()}")
        if r.skipped:
            notes.append(f"- {r.system}: {len(r.skipped)} queries not run (e.g. empty text)")
        notes += [f"- dataset: {w}" for w in r.dataset_warnings]
    parts += ["", *dict.fromkeys(notes)]
    return "\n".join(parts) + "\n"


def _has_survival(r: EvalResult) -> bool:
    return any(st.survival is not None for st in r.stages.values())
