"""ANN versus exact search: how many of the exact top-k an approximate index finds.

Both runs must come from the same embeddings (same encoder, same documents); the exact run is
the ground truth. Ranks follow trec_eval's order (float32 score descending, then id descending).

>>> ann_recall({"q": {"a": 0.9, "c": 0.5}}, {"q": {"a": 0.9, "b": 0.8}}, k=2).mean
0.5
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from pydantic import BaseModel, ConfigDict

from evals.measures.prepare import Run
from evals.runs import run_from_rankings, top_k
from rag.core.errors import ConfigError
from rag.core.nodes import check_k
from rag.core.types import Ranking


class AnnRecall(BaseModel):
    """Recall@k of the approximate run against the exact one, per query and averaged."""

    model_config = ConfigDict(frozen=True)
    k: int
    mean: float
    per_query: dict[str, float]


def ann_recall(
    approx: Run | Sequence[Ranking], exact: Run | Sequence[Ranking], k: int = 10
) -> AnnRecall:
    """``|top_k(approx) ∩ top_k(exact)| / |top_k(exact)|`` per query (1.0 when exact is empty).

    Every query of ``exact`` must be in ``approx``.
    """
    check_k(k)
    a = run_from_rankings(approx) if isinstance(approx, Sequence) else approx
    e = run_from_rankings(exact) if isinstance(exact, Sequence) else exact
    missing = [q for q in e if q not in a]
    if missing:
        raise ConfigError(
            f"{len(missing)} queries of the exact run are missing from the ANN run "
            f"(e.g. {missing[0]!r})"
        )
    a_top, e_top = top_k(a, k), top_k(e, k)
    per = {}
    for q, truth in e_top.items():
        per[q] = len(truth.keys() & a_top[q].keys()) / len(truth) if truth else 1.0
    mean = float(np.mean(list(per.values()))) if per else 0.0
    return AnnRecall(k=k, mean=mean, per_query=per)
