"""The answer-level report: means with CIs, judge calibration, and JSON / Markdown / HTML output.

Every judged metric carries a ``calibration`` entry. Without human labels it says
``"uncalibrated"`` and the Markdown marks the figure with a dagger; with labels it reports the
judge's agreement (accuracy, Wilson CI), the classical CI from the labels alone and the
prediction-powered CI (PPI and PPI++, :mod:`evals.ppi`) of the system's mean, which is the
figure to quote (ARES, Saad-Falcon et al. 2024).
"""

from __future__ import annotations

import html
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from evals.answers import JUDGED, judge_agreement
from evals.ppi import classical_mean_ci, ppi_mean_ci
from evals.stats import bootstrap_ci

UNCALIBRATED = "uncalibrated: no human labels; the judge's score is not a measurement"


@dataclass
class AnswerReport:
    system: str
    dataset: str
    judge: str | None
    n_answers: int
    aggregate: dict[str, dict[str, Any]]
    per_query: dict[str, dict[str, float]]
    notes: list[str] = field(default_factory=list)


def _calibrate(
    metric: str, scores: dict[str, float], labels: Mapping[str, float], threshold: float
) -> dict[str, Any] | str:
    lab = sorted(q for q in scores if q in labels)
    unl = sorted(q for q in scores if q not in labels)
    if len(lab) < 2:
        return UNCALIBRATED
    y = np.array([labels[q] for q in lab], dtype=np.float64)
    out: dict[str, Any] = {
        "agreement": judge_agreement(scores, labels, threshold),
        "classical_from_labels": classical_mean_ci(y).to_dict(),
    }
    if len(unl) >= 2:
        f_lab = np.array([scores[q] for q in lab])
        f_unl = np.array([scores[q] for q in unl])
        out["ppi"] = ppi_mean_ci(y, f_lab, f_unl).to_dict()
        out["ppi++"] = ppi_mean_ci(y, f_lab, f_unl, lam="auto").to_dict()
    return out


def build_report(
    per_query: dict[str, dict[str, float]],
    labels: Mapping[str, Mapping[str, float]] | None = None,
    system: str = "system",
    dataset: str = "",
    judge: str | None = None,
    threshold: float = 0.5,
) -> AnswerReport:
    """Aggregate :func:`evals.answers.answer_metrics` output; ``labels`` is
    ``{query id: {metric: human value}}`` (e.g. ``{"q1": {"faithfulness": 1}}``)."""
    metrics = sorted({m for row in per_query.values() for m in row})
    agg: dict[str, dict[str, Any]] = {}
    for m in metrics:
        scores = {q: row[m] for q, row in per_query.items() if m in row}
        vals = np.array(list(scores.values()))
        lo, hi = bootstrap_ci(vals) if len(vals) > 1 else (float(vals[0]), float(vals[0]))
        entry: dict[str, Any] = {"mean": float(vals.mean()), "bootstrap95": [lo, hi],
                                 "n": len(vals)}
        if m in JUDGED:
            human = {q: float(v[m]) for q, v in (labels or {}).items() if m in v}
            entry["calibration"] = _calibrate(m, scores, human, threshold)
        agg[m] = entry
    notes = []
    if judge and not labels:
        notes.append(f"judge {judge}: {UNCALIBRATED}")
    return AnswerReport(system, dataset, judge, len(per_query), agg, per_query, notes)


def to_json(report: AnswerReport) -> str:
    return json.dumps(asdict(report), indent=2)


def _rows(report: AnswerReport) -> list[list[str]]:
    rows = []
    for m, e in report.aggregate.items():
        cal = e.get("calibration")
        lo, hi = e["bootstrap95"]
        name = m + (" †" if cal == UNCALIBRATED else "")
        if isinstance(cal, dict):
            ag = cal["agreement"]
            best = cal.get("ppi++") or cal["classical_from_labels"]
            calib = (f"agreement {ag['accuracy']:.3f} (n={ag['n']}); {best['method']} "
                     f"{best['estimate']:.4f} [{best['lo']:.4f}, {best['hi']:.4f}]")
        else:
            calib = "uncalibrated" if cal else "-"
        rows.append([name, f"{e['mean']:.4f}", f"[{lo:.4f}, {hi:.4f}]", str(e["n"]), calib])
    return rows


HEADER = ["metric", "mean", "bootstrap 95%", "n", "calibration vs human labels"]


def to_markdown(report: AnswerReport) -> str:
    lines = [f"## answers: {report.system} on {report.dataset or '-'} "
             f"(judge: {report.judge or 'none'})", "",
             "| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    lines += ["| " + " | ".join(r) + " |" for r in _rows(report)]
    if any(e.get("calibration") == UNCALIBRATED for e in report.aggregate.values()):
        lines += ["", f"† {UNCALIBRATED}."]
    lines += [f"- {n}" for n in report.notes]
    return "\n".join(lines) + "\n"


def to_html(report: AnswerReport) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in HEADER)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in _rows(report)
    )
    notes = "".join(f"<li>{html.escape(n)}</li>" for n in report.notes)
    title = html.escape(f"answers: {report.system} (judge: {report.judge or 'none'})")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{title}</title></head>"
            f"<body><h2>{title}</h2><table border='1'><tr>{head}</tr>{body}</table>"
            f"<p>† {html.escape(UNCALIBRATED)}</p><ul>{notes}</ul></body></html>\n")
