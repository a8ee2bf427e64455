"""Score a run against qrels with any list of measures: one sort, every measure from it.

Which queries are scored, as trec_eval decides, and reported rather than hidden:

* a query in the run but not in the qrels is not scored (``unjudged_queries``);
* a query in the qrels but not in the run is not scored unless ``missing="zero"``, which scores it
  as an empty ranking, i.e. 0 (trec_eval ``-c``); either way it is listed (``missing_queries``);
* a query whose judgments hold no relevant document is scored (everything is 0, as in
  trec_eval) and listed (``no_relevant_queries``) so that a user can drop it knowingly.

>>> from evals.measures import nDCG, P
>>> res = score_run({"q1": {"d1": 2.0, "d2": 1.0}}, {"q1": {"d2": 1}}, [nDCG @ 10, P @ 1])
>>> round(res.mean["nDCG@10"], 4), res.mean["P@1"]
(0.6309, 0.0)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from pydantic import BaseModel, ConfigDict

from evals.measures.base import Measure, parse_measures
from evals.measures.prepare import Qrels, Run, prepare
from rag.core.errors import ConfigError


class Coverage(BaseModel):
    """Which queries were scored and which were left out, with the reason."""

    model_config = ConfigDict(frozen=True)
    n_scored: int
    unjudged_queries: list[str] = []
    missing_queries: list[str] = []
    no_relevant_queries: list[str] = []
    missing_policy: str = "skip"

    def summary(self) -> str:
        """One line for logs and reports."""
        parts = [f"{self.n_scored} queries scored"]
        if self.unjudged_queries:
            parts.append(f"{len(self.unjudged_queries)} run queries without qrels skipped")
        if self.missing_queries:
            verb = "scored 0" if self.missing_policy == "zero" else "skipped"
            parts.append(f"{len(self.missing_queries)} judged queries absent from the run {verb}")
        if self.no_relevant_queries:
            parts.append(f"{len(self.no_relevant_queries)} with no relevant judgment (score 0)")
        return "; ".join(parts)


class RunScores(BaseModel):
    """Per-query values (``per_query[measure][qid]``) and their means (``mean[measure]``)."""

    model_config = ConfigDict(frozen=True)
    measures: list[str]
    per_query: dict[str, dict[str, float]]
    mean: dict[str, float]
    coverage: Coverage


def score_run(
    run: Run,
    qrels: Qrels,
    measures: Sequence[Measure | str],
    *,
    missing: Literal["skip", "zero"] = "skip",
    rel_level: int = 1,
) -> RunScores:
    """Score ``run`` (``qid -> docid -> score``) against ``qrels`` (``qid -> docid -> int``).

    Every value equals pytrec_eval / trec_eval to floating-point rounding (tested to 1e-9).
    """
    if missing not in ("skip", "zero"):
        raise ConfigError(f"missing must be 'skip' or 'zero', got {missing!r}")
    ms = parse_measures(list(measures))
    unjudged = [q for q in run if q not in qrels]
    absent = [q for q in qrels if q not in run]
    qids = [q for q in qrels if q in run] if missing == "skip" else list(qrels)
    no_rel = [q for q in qids if not any(v >= rel_level for v in qrels[q].values())]
    depths = [m.depth() for m in ms]
    depth = None if None in depths else max(d for d in depths if d is not None)
    prep = prepare(run, qrels, qids, depth, rel_level)
    per_query: dict[str, dict[str, float]] = {}
    mean: dict[str, float] = {}
    for m in ms:
        values = m.compute(prep)
        per_query[str(m)] = dict(zip(qids, values.tolist(), strict=True))
        mean[str(m)] = float(values.mean()) if len(values) else 0.0
    coverage = Coverage(
        n_scored=len(qids),
        unjudged_queries=unjudged,
        missing_queries=absent,
        no_relevant_queries=no_rel,
        missing_policy=missing,
    )
    return RunScores(
        measures=[str(m) for m in ms], per_query=per_query, mean=mean, coverage=coverage
    )
