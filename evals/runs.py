"""Runs: ``qid -> docid -> score`` (the pytrec_eval / ranx shape), built from rankings.

Duplicate document ids within one query cannot exist in a dict; where they come from:

* :func:`run_from_rankings` keeps one entry per id: the highest score (``by="score"``, the same
  rule as :meth:`rag.core.types.Ranking.from_scored`) or the first position (``by="rank"``);
* :func:`evals.trec.read_run` rejects them like trec_eval (``duplicate docs``) unless asked to
  keep the maximum or the first.

>>> from rag.core.types import Document, Hit, Query, Ranking
>>> hit = Hit(document=Document(id="d", text="t"), score=2.0)
>>> r = Ranking(query=Query(id="q1", text="x"), hits=(hit,))
>>> run_from_rankings([r])
{'q1': {'d': 2.0}}
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from evals.measures.prepare import Run
from rag.core.errors import ConfigError
from rag.core.types import Ranking


def run_from_rankings(
    rankings: Sequence[Ranking], by: Literal["score", "rank"] = "score"
) -> dict[str, dict[str, float]]:
    """Convert rankings to a run.

    ``by="score"`` keeps each hit's score (measures then order by score, as trec_eval does);
    ``by="rank"`` scores position ``i`` of ``n`` hits as ``n - i``, so the ranking's own order is
    evaluated even when its scores are missing or tied (listwise rerankers).
    """
    if by not in ("score", "rank"):
        raise ConfigError(f"by must be 'score' or 'rank', got {by!r}")
    run: dict[str, dict[str, float]] = {}
    for r in rankings:
        qid = r.query.id
        if qid in run:
            raise ConfigError(f"query id {qid!r} appears in two rankings; query ids must be unique")
        scores: dict[str, float] = {}
        n = len(r.hits)
        for i, h in enumerate(r.hits):
            s = float(n - i) if by == "rank" else float(h.score)
            prev = scores.get(h.id)
            if prev is None or (by == "score" and s > prev):
                scores[h.id] = s
        run[qid] = scores
    return run


def top_k(run: Run, k: int) -> dict[str, dict[str, float]]:
    """Cut every query of ``run`` to its first ``k`` documents in trec_eval's order."""
    import numpy as np

    out = {}
    for q, r in run.items():
        order = sorted(r, key=lambda d: (np.float32(r[d]), d), reverse=True)[:k]
        out[q] = {d: r[d] for d in order}
    return out
