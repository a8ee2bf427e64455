"""Leave-one-collection-out selection of a system, and its honest held-out comparison.

Given per-query scores of every candidate system on several judged collections, each collection
in turn is held out: the system with the best *macro mean* of the measure over the other
collections (each collection's mean counts once, however many queries it has) is chosen, and only
then is it scored on the held-out collection against a fixed baseline, with the paired
randomisation test (:func:`evals.stats.randomization_test`) on that collection's queries and a
Holm correction over the folds (:func:`evals.stats.holm`). The choice never sees the held-out
queries, so the held-out figures estimate what a preset chosen this way does on a collection it
was not tuned on (the cross-collection protocol of the BEIR zero-shot setting, Thakur et al.,
NeurIPS 2021 Datasets and Benchmarks).

Ties in the selection mean go to the candidate listed first, so listing the baseline first makes
"no candidate beats the baseline on the other collections" choose the baseline itself.

>>> scores = {
...     "a": {"base": {"q1": 0.5, "q2": 0.5}, "new": {"q1": 0.9, "q2": 0.7}},
...     "b": {"base": {"q1": 0.4, "q2": 0.6}, "new": {"q1": 0.6, "q2": 0.8}},
...     "c": {"base": {"q1": 0.3, "q2": 0.3}, "new": {"q1": 0.2, "q2": 0.3}},
... }
>>> [(f.held_out, f.chosen, round(f.delta, 2)) for f in leave_one_out(scores, "base").folds]
[('a', 'new', 0.3), ('b', 'new', 0.2), ('c', 'new', -0.05)]
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from pydantic import BaseModel, ConfigDict

from evals.stats import holm, paired_scores, randomization_test
from rag.errors import ConfigError

PerQuery = Mapping[str, Mapping[str, Mapping[str, float]]]  # collection -> system -> qid -> value


class Fold(BaseModel):
    """One held-out collection: what was chosen on the others and how it does here."""

    model_config = ConfigDict(frozen=True)
    held_out: str
    chosen: str
    selection_mean: dict[str, float]  # system -> macro mean over the other collections
    score: float  # the chosen system's mean on the held-out collection
    baseline_score: float
    delta: float
    p_value: float  # two-sided paired randomisation test, chosen vs baseline, held-out queries
    p_holm: float = 1.0  # Holm-corrected over the folds
    queries: int


class Selection(BaseModel):
    """Every fold, and the mean held-out difference over the folds."""

    model_config = ConfigDict(frozen=True)
    baseline: str
    candidates: list[str]
    folds: list[Fold]
    mean_delta: float
    significant_folds: list[str]  # held-out collections where Holm p < alpha and delta > 0


def _means(per_query: PerQuery, collection: str, systems: Sequence[str]) -> dict[str, float]:
    return {s: float(np.mean(list(per_query[collection][s].values()))) for s in systems}


def check_scores(per_query: PerQuery, systems: Sequence[str]) -> None:
    """Every collection scores every system on the same queries (paired tests need it)."""
    if len(per_query) < 2:
        raise ConfigError(f"leave-one-out needs at least 2 collections, got {len(per_query)}")
    for c, by_system in per_query.items():
        missing = [s for s in systems if s not in by_system]
        if missing:
            raise ConfigError(f"collection {c!r} has no scores for {missing}")
        first = set(by_system[systems[0]])
        if not first:
            raise ConfigError(f"collection {c!r} has no queries for {systems[0]!r}")
        for s in systems[1:]:
            if set(by_system[s]) != first:
                raise ConfigError(
                    f"collection {c!r}: {s!r} and {systems[0]!r} score different queries"
                )


def leave_one_out(
    per_query: PerQuery,
    baseline: str,
    candidates: Sequence[str] | None = None,
    alpha: float = 0.05,
    n_permutations: int = 10_000,
) -> Selection:
    """Choose on all collections but one, test on that one, for every collection.

    Args:
        per_query: ``collection -> system -> qid -> value`` of one measure (e.g. nDCG@10).
        baseline: the system every choice is compared with (e.g. RRF(BM25, MiniLM)).
        candidates: the systems to choose from, in tie-breaking order (default: the systems of
            the first collection, baseline first).
        alpha: level at which a fold's Holm-corrected p counts as significant.
        n_permutations: sign flips of the randomisation test.
    """
    first = next(iter(per_query.values()), {})
    names = list(candidates) if candidates is not None else list(first)
    if candidates is None and baseline in names:
        names.remove(baseline)
        names.insert(0, baseline)
    if not names:
        raise ConfigError("leave-one-out needs at least one candidate system")
    check_scores(per_query, list(dict.fromkeys([baseline, *names])))
    means = {c: _means(per_query, c, list(dict.fromkeys([baseline, *names]))) for c in per_query}
    folds = []
    for held in per_query:
        others = [c for c in per_query if c != held]
        selection = {s: float(np.mean([means[c][s] for c in others])) for s in names}
        chosen = max(names, key=lambda s: (selection[s], -names.index(s)))
        _, a, b = paired_scores(per_query[held][chosen], per_query[held][baseline])
        p = 1.0 if chosen == baseline else randomization_test(a, b, n_permutations)
        folds.append(
            Fold(
                held_out=held,
                chosen=chosen,
                selection_mean={s: round(v, 6) for s, v in selection.items()},
                score=means[held][chosen],
                baseline_score=means[held][baseline],
                delta=means[held][chosen] - means[held][baseline],
                p_value=p,
                queries=len(a),
            )
        )
    adjusted = holm([f.p_value for f in folds])
    folds = [f.model_copy(update={"p_holm": p}) for f, p in zip(folds, adjusted)]
    return Selection(
        baseline=baseline,
        candidates=names,
        folds=folds,
        mean_delta=float(np.mean([f.delta for f in folds])),
        significant_folds=[f.held_out for f in folds if f.p_holm < alpha and f.delta > 0],
    )
