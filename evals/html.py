"""A self-contained HTML report: tables plus matplotlib plots embedded as base64 PNGs.

Plots: per-query score distribution of each system (first measure), system comparison bars
with bootstrap 95% CIs (every measure), per-stage means when a pipeline has several stages, and
the per-query latency distribution. matplotlib is the ``report`` extra; it is imported here only.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Sequence
from typing import Any

import numpy as np

from evals.compare import Comparison
from evals.harness import EvalResult
from evals.report import to_markdown
from evals.stats import bootstrap_ci
from rag.core.extras import require


def _png(fig: Any) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _plots(results: Sequence[EvalResult]) -> list[tuple[str, str]]:
    require("matplotlib", "report")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    measures = results[0].measures
    names = [r.system for r in results]
    out = []
    fig, ax = plt.subplots(figsize=(7, 3.5))
    m0 = measures[0]
    ax.hist([list(r.per_query[m0].values()) for r in results], bins=20, label=names)
    ax.set(xlabel=m0, ylabel="queries", title=f"Per-query {m0}")
    ax.legend()
    out.append((f"Per-query {m0} distribution", _png(fig)))

    fig, ax = plt.subplots(figsize=(7, 3.5))
    width = 0.8 / len(results)
    x = np.arange(len(measures))
    for i, r in enumerate(results):
        means = [r.aggregate[m] for m in measures]
        cis = [
            bootstrap_ci(np.array(list(r.per_query[m].values())), n_resamples=2000)
            for m in measures
        ]
        err = np.array(
            [
                [mu - lo for mu, (lo, _) in zip(means, cis, strict=True)],
                [hi - mu for mu, (_, hi) in zip(means, cis, strict=True)],
            ]
        )
        ax.bar(x + i * width, means, width, yerr=err, capsize=3, label=r.system)
    ax.set_xticks(x + width * (len(results) - 1) / 2, measures)
    ax.set(ylabel="mean", ylim=(0, 1), title="Systems (bootstrap 95% CI)")
    ax.legend()
    out.append(("System comparison", _png(fig)))

    staged = [r for r in results if len(r.stages) > 1]
    for r in staged:
        fig, ax = plt.subplots(figsize=(7, 3.5))
        stages = list(r.stages)
        for m in measures:
            ax.plot(stages, [r.stages[s].aggregate[m] for s in stages], marker="o", label=m)
        ax.set(ylabel="mean", ylim=(0, 1), title=f"{r.system}: quality by stage")
        ax.legend()
        out.append((f"{r.system} per stage", _png(fig)))

    timed = [(r.system, r.latency) for r in results if r.latency is not None]
    if not timed:  # scored run files only
        return out
    fig, ax = plt.subplots(figsize=(7, 3.5))
    ax.bar([n for n, _ in timed], [lat.p50_ms for _, lat in timed], label="p50")
    ax.bar(
        [n for n, _ in timed],
        [lat.p95_ms - lat.p50_ms for _, lat in timed],
        bottom=[lat.p50_ms for _, lat in timed],
        label="p95",
        alpha=0.6,
    )
    ax.set(ylabel="ms per query", title="Latency")
    ax.legend()
    out.append(("Latency", _png(fig)))
    return out


_CSS = (
    "body{font-family:system-ui,sans-serif;max-width:980px;margin:2em auto;color:#222}"
    "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:3px 8px}"
    "img{max-width:100%;display:block;margin:1em 0}pre{background:#f6f6f6;padding:1em}"
)


def to_html(results: Sequence[EvalResult], comparisons: Sequence[Comparison] = ()) -> str:
    """One HTML page, no external resources: the Markdown tables and the plots."""
    title = f"ragnodes eval: {results[0].dataset}" if results else "ragnodes eval"
    body = [f"<h1>{html.escape(title)}</h1>", _md_tables_to_html(to_markdown(results, comparisons))]
    if results:
        for caption, b64 in _plots(results):
            body.append(f"<h2>{html.escape(caption)}</h2>")
            body.append(f'<img alt="{html.escape(caption)}" src="data:image/png;base64,{b64}">')
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{_CSS}</style></head><body>{''.join(body)}</body></html>\n"
    )


def _md_tables_to_html(md: str) -> str:
    """Render the small subset of Markdown that :func:`to_markdown` writes."""
    out: list[str] = []
    rows: list[list[str]] = []

    def flush() -> None:
        if rows:
            head, *rest = rows
            out.append("<table><tr>" + "".join(f"<th>{c}</th>" for c in head) + "</tr>")
            out.extend("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rest)
            out.append("</table>")
            rows.clear()

    for line in md.splitlines():
        if line.startswith("|"):
            cells = [html.escape(c.strip()) for c in line.strip("|").split("|")]
            if not all(set(c) <= {"-"} for c in cells):
                rows.append(cells)
            continue
        flush()
        if line.startswith("### "):
            out.append(f"<h3>{html.escape(line[4:])}</h3>")
        elif line.startswith("## "):
            out.append(f"<h2>{html.escape(line[3:])}</h2>")
        elif line.startswith("- "):
            out.append(f"<p>{html.escape(line[2:])}</p>")
    flush()
    return "\n".join(out)
