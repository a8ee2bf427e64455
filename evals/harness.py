"""Run a system over a judged collection and score every stage.

What a system is (two protocols, checked structurally):

* :class:`RetrievalSystem`: anything with ``retrieve_batch(queries, k) -> list[Ranking]`` (every
  retriever). It is evaluated as one stage named ``"retrieval"``.
* :class:`StagedSystem`: a pipeline with ``run_stages(queries, k) -> dict[str, list[Ranking]]``,
  one entry per stage in pipeline order (retrieval, each reranker, each compressor), every list
  aligned with ``queries``. The last stage is the pipeline's output. Every stage is scored on the
  same queries, so a user sees where quality is won or lost.

Latency: each batch is timed with ``time.perf_counter``; every query of a batch is charged the
batch time divided by its size (use ``batch_size=1`` for true per-query latency). Throughput is
queries over the summed batch time. With ``warmup=True`` (default) the first query is run once,
untimed and unscored, so that lazy model loading and index building are not counted as query
latency (indexing time is reported apart as ``index_s``).

Queries with empty text are not sent; they are listed in ``skipped`` with the reason and score 0
(as a judged query absent from the run, trec_eval ``-c``).

:func:`score_run_file` scores a run someone already has (a TREC file) the same way, as one stage
named ``"run"`` with no latency; the values equal trec_eval's (``pytrec_eval``) for every query in
the run, and a judged query the run misses scores 0 (trec_eval ``-c``).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from evals.compression import Units, content_survival
from evals.datasets import Dataset
from evals.measures import Coverage, Measure, parse_measures, score_run
from evals.runs import run_from_rankings
from rag.core.errors import ConfigError
from rag.core.nodes import check_k
from rag.core.types import Query, Ranking


@runtime_checkable
class RetrievalSystem(Protocol):
    def retrieve_batch(self, queries: Sequence[Query], k: int) -> list[Ranking]: ...


@runtime_checkable
class StagedSystem(Protocol):
    def run_stages(self, queries: Sequence[Query], k: int) -> dict[str, list[Ranking]]: ...


class StageResult(BaseModel):
    """Scores of one stage: means, per-query values, coverage and content survival."""

    model_config = ConfigDict(frozen=True)
    aggregate: dict[str, float]
    per_query: dict[str, dict[str, float]]
    coverage: Coverage
    survival: float | None = None
    survival_per_query: dict[str, float] | None = None


class Latency(BaseModel):
    model_config = ConfigDict(frozen=True)
    p50_ms: float
    p95_ms: float
    mean_ms: float
    qps: float
    total_s: float
    batch_size: int
    index_s: float | None = None


class EvalResult(BaseModel):
    """Everything :func:`evaluate` measured. ``runs`` (stage -> run) is kept but not serialised."""

    model_config = ConfigDict(frozen=True)
    system: str
    config: dict[str, Any] | None = None
    dataset: str
    split: str
    k: int
    measures: list[str]
    stages: dict[str, StageResult]
    final_stage: str
    latency: Latency | None  # None: a scored run file (nothing was timed)
    n_queries: int
    skipped: dict[str, str] = {}
    dataset_warnings: list[str] = []
    runs: dict[str, dict[str, dict[str, float]]] = Field(default_factory=dict, exclude=True)

    @property
    def aggregate(self) -> dict[str, float]:
        """Means of the final stage."""
        return self.stages[self.final_stage].aggregate

    @property
    def per_query(self) -> dict[str, dict[str, float]]:
        return self.stages[self.final_stage].per_query


def _system_name(system: object) -> str:
    return str(getattr(system, "name", "") or type(system).__name__)


def _config(system: object) -> dict[str, Any] | None:
    to_config = getattr(system, "to_config", None)
    return to_config() if callable(to_config) else None


def _call(system: Any, staged: bool, batch: list[Query], k: int) -> dict[str, list[Ranking]]:
    if staged:
        return system.run_stages(batch, k)
    return {"retrieval": system.retrieve_batch(batch, k)}


def _run_batches(
    system: object,
    queries: list[Query],
    k: int,
    batch_size: int,
    progress: bool,
    warmup: bool,
    label: str,
) -> tuple[dict[str, list[Ranking]], list[float], float]:
    from tqdm.auto import tqdm

    staged = isinstance(system, StagedSystem)
    if not staged and not isinstance(system, RetrievalSystem):
        raise ConfigError(
            f"{type(system).__name__} has neither retrieve_batch(queries, k) nor "
            "run_stages(queries, k); pass a retriever or a pipeline"
        )
    if warmup:
        _call(system, staged, queries[:1], k)
    stages: dict[str, list[Ranking]] = {}
    per_query_s: list[float] = []
    total = 0.0
    bar = tqdm(total=len(queries), desc=f"eval {label}", unit="query", disable=not progress)
    for start in range(0, len(queries), batch_size):
        batch = queries[start : start + batch_size]
        t0 = time.perf_counter()
        out = _call(system, staged, batch, k)
        dt = time.perf_counter() - t0
        total += dt
        per_query_s.extend([dt / len(batch)] * len(batch))
        for name, rankings in out.items():
            if len(rankings) != len(batch):
                raise ConfigError(
                    f"stage {name!r} returned {len(rankings)} rankings for {len(batch)} queries"
                )
            stages.setdefault(name, []).extend(rankings)
        bar.update(len(batch))
    bar.close()
    return stages, per_query_s, total


def evaluate(
    system: object,
    dataset: Dataset,
    measures: Sequence[Measure | str],
    k: int = 100,
    batch_size: int = 32,
    progress: bool = True,
    index: bool = False,
    text_units: Units | None = None,
    warmup: bool = True,
    name: str | None = None,
    index_s: float | None = None,
) -> EvalResult:
    """Retrieve for every judged query of ``dataset`` in batches and score every stage.

    ``index=True`` first calls ``system.index(dataset.corpus)`` (timed as ``latency.index_s``;
    ``index_s`` reports an indexing done by the caller, :func:`evals.systems.prepare`).
    ``text_units`` (see :mod:`evals.compression`) adds content survival to each stage. ``name``
    labels the system and its progress bar (default: the node's ``name``).
    """
    check_k(k)
    check_k(batch_size)
    ms = parse_measures(list(measures))
    label = name or _system_name(system)
    if index:
        t0 = time.perf_counter()
        system.index(dataset.corpus)  # type: ignore[attr-defined]
        index_s = time.perf_counter() - t0
    skipped = {q.id: "empty query text" for q in dataset.queries if not q.text.strip()}
    queries = [q for q in dataset.queries if q.id not in skipped]
    if not queries:
        raise ConfigError(f"{dataset.name}: no queries to evaluate")
    stage_rankings, per_query_s, total = _run_batches(
        system, queries, k, batch_size, progress, warmup, label
    )
    # judged queries only: a query loaded with all_queries=True but never judged is reported as
    # unjudged by score_run rather than scored 0
    qrels = {q.id: dataset.qrels[q.id] for q in dataset.queries if q.id in dataset.qrels}
    stages: dict[str, StageResult] = {}
    runs: dict[str, dict[str, dict[str, float]]] = {}
    for name, rankings in stage_rankings.items():
        runs[name] = run_from_rankings(rankings)
        scores = score_run(runs[name], qrels, ms, missing="zero")
        surv = content_survival(rankings, text_units) if text_units is not None else None
        stages[name] = StageResult(
            aggregate=scores.mean,
            per_query=scores.per_query,
            coverage=scores.coverage,
            survival=surv.mean if surv else None,
            survival_per_query=surv.per_query if surv else None,
        )
    lat = np.array(per_query_s) * 1000
    latency = Latency(
        p50_ms=float(np.percentile(lat, 50)),
        p95_ms=float(np.percentile(lat, 95)),
        mean_ms=float(lat.mean()),
        qps=len(queries) / total if total > 0 else float("inf"),
        total_s=total,
        batch_size=batch_size,
        index_s=index_s,
    )
    return EvalResult(
        system=label,
        config=_config(system),
        dataset=dataset.name,
        split=dataset.split,
        k=k,
        measures=[str(m) for m in ms],
        stages=stages,
        final_stage=list(stages)[-1],
        latency=latency,
        n_queries=len(dataset.queries),
        skipped=skipped,
        dataset_warnings=list(dataset.warnings),
        runs=runs,
    )


def score_run_file(
    run: dict[str, dict[str, float]],
    dataset: Dataset,
    measures: Sequence[Measure | str],
    name: str,
    config: dict[str, Any] | None = None,
) -> EvalResult:
    """Score an existing run (``qid -> docid -> score``, e.g. :func:`evals.trec.read_run`) on
    ``dataset``'s judged queries as one stage ``"run"``, whole, as trec_eval reads it (measures
    cut at their own depth); run queries that are not judged are ignored (``coverage`` lists
    them), judged queries missing from the run score 0."""
    ms = parse_measures(list(measures))
    judged = {q.id for q in dataset.queries}
    qrels = {q: v for q, v in dataset.qrels.items() if q in judged}
    scores = score_run(run, qrels, ms, missing="zero")
    stage = StageResult(aggregate=scores.mean, per_query=scores.per_query, coverage=scores.coverage)
    return EvalResult(
        system=name,
        config=config,
        dataset=dataset.name,
        split=dataset.split,
        k=max((len(r) for r in run.values()), default=0) or 1,
        measures=[str(m) for m in ms],
        stages={"run": stage},
        final_stage="run",
        latency=None,
        n_queries=len(dataset.queries),
        dataset_warnings=list(dataset.warnings),
        runs={"run": run},
    )
