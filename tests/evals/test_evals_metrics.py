"""Our measures against pytrec_eval (trec_eval itself) on randomised runs with ties,
float32-only ties, graded and negative judgments, empty rankings and unjudged queries."""

from __future__ import annotations

import random

import numpy as np
import pytest

from evals.measures import (
    AP,
    MEASURES,
    RR,
    Judged,
    P,
    R,
    Rprec,
    Success,
    nDCG,
    parse_measure,
    parse_measures,
    score_run,
)
from rag.core.errors import ConfigError, DataError

pytrec_eval = pytest.importorskip("pytrec_eval")

CUTS = (1, 3, 5, 10, 20, 100)


def random_collection(seed: int, n_q: int = 60, pool: int = 150, neg: bool = True):
    rng = random.Random(seed)
    ids = [f"d{rng.randint(0, 999)}" if i % 3 else str(rng.randint(0, 999)) for i in range(pool)]
    ids = list(dict.fromkeys(ids))
    lo = -1 if neg else 0
    qrels: dict[str, dict[str, int]] = {}
    run: dict[str, dict[str, float]] = {}
    for q in range(n_q):
        qid = f"q{q}"
        if q % 11 != 5:  # some run queries have no qrels
            judged = rng.sample(ids, rng.randint(1, 25))
            qrels[qid] = {d: rng.randint(lo, 3) for d in judged}
        if q % 13 == 7:  # some judged queries are absent from the run
            continue
        depth = 0 if q % 17 == 3 else rng.randint(1, 120)
        docs = rng.sample(ids, min(depth, len(ids)))
        mode = q % 3
        if mode == 0:  # heavy ties
            run[qid] = {d: float(rng.randint(0, 4)) for d in docs}
        elif mode == 1:  # ties in float32 only
            run[qid] = {d: 1.0 + rng.choice([0.0, 1e-12, 2e-12, 0.5]) for d in docs}
        else:
            run[qid] = {d: rng.gauss(0, 1) for d in docs}
    return run, qrels


def trec_order(ranking: dict[str, float]) -> list[str]:
    """trec_eval's order written the slow, obvious way: float32 score desc, then id desc."""
    return sorted(ranking, key=lambda d: (np.float32(ranking[d]), d), reverse=True)


def reference(run, qrels, measure):
    """pytrec_eval's value of ``measure`` per query (RR@k: recip_rank of the cut run)."""
    name, k = measure.name, measure.cutoff
    if name == "RR" and k is not None:
        run = {q: {d: r[d] for d in trec_order(r)[:k]} for q, r in run.items()}
    key = {
        "nDCG": f"ndcg_cut_{k}" if k else "ndcg",
        "P": f"P_{k}",
        "R": f"recall_{k}" if k else "set_recall",
        "AP": f"map_cut_{k}" if k else "map",
        "RR": "recip_rank",
        "Rprec": "Rprec",
        "Success": f"success_{k}",
    }[name]
    out = pytrec_eval.RelevanceEvaluator(qrels, {key}).evaluate(run)
    return {q: v[key.replace("set_recall", "set_recall")] for q, v in out.items()}


def judged_reference(run, qrels, k):
    out = {}
    for q, r in run.items():
        if q not in qrels:
            continue
        top = trec_order(r)[:k] if k else trec_order(r)
        out[q] = sum(d in qrels[q] for d in top) / len(top) if top else 0.0
    return out


ALL = [nDCG, AP, R, RR] + [m @ k for m in (nDCG, P, R, AP, RR, Success, Judged) for k in CUTS]
ALL += [Rprec, Judged]


@pytest.mark.parametrize("seed", range(6))
def test_random_runs_match_pytrec_eval(seed: int) -> None:
    run, qrels = random_collection(seed, neg=seed % 2 == 0)
    ours = score_run(run, qrels, ALL)
    for m in ALL:
        if m.name == "Judged":
            ref = judged_reference(run, qrels, m.cutoff)
        else:
            ref = reference(run, qrels, m)
        got = ours.per_query[str(m)]
        if m.cutoff is not None:  # alone, prepare() keeps only m.cutoff ranks: same values
            assert score_run(run, qrels, [m]).per_query[str(m)] == got
        assert set(got) == set(ref), str(m)
        for q in ref:
            assert abs(got[q] - ref[q]) <= 1e-9, (str(m), q, got[q], ref[q])


def test_judged_matches_ir_measures_without_ties() -> None:
    ir_measures = pytest.importorskip("ir_measures")
    run, qrels = random_collection(3)
    run = {q: {d: i + random.Random(i).random() for i, d in enumerate(r)} for q, r in run.items()}
    run = {q: r for q, r in run.items() if r}
    ms = [ir_measures.parse_measure(f"Judged@{k}") for k in CUTS]
    ref = {(m.query_id, str(m.measure)): m.value for m in ir_measures.iter_calc(ms, qrels, run)}
    ours = score_run(run, qrels, [Judged @ k for k in CUTS])
    assert {q for q, _ in ref} >= set(ours.per_query["Judged@1"])
    for (q, name), v in ref.items():
        if q not in run:
            continue  # ir_measures scores judged queries absent from the run as 0; we skip them
        assert abs(ours.per_query[name][q] - v) <= 1e-12


def test_ties_go_to_the_larger_id_and_float32_ties() -> None:
    qrels = {"q": {"a": 1}}
    # equal scores: trec_eval ranks "b" (larger id) first, so the relevant "a" is second
    assert score_run({"q": {"a": 1.0, "b": 1.0}}, qrels, [RR]).mean["RR"] == 0.5
    # equal as float32, different as double: still a tie
    assert score_run({"q": {"a": 1.0 + 1e-12, "b": 1.0}}, qrels, [RR]).mean["RR"] == 0.5
    assert score_run({"q": {"a": 1.0 + 1e-6, "b": 1.0}}, qrels, [RR]).mean["RR"] == 1.0


def test_constant_scorer_gets_no_credit() -> None:
    """MTEB once gave MRR 1.0 to a constant scorer; here ties never favour the system."""
    qrels = {f"q{i}": {f"d{i:03d}": 1} for i in range(50)}
    docs = [f"d{i:03d}" for i in range(100)]
    run = {q: dict.fromkeys(docs, 0.0) for q in qrels}
    rr = score_run(run, qrels, [RR @ 10]).mean["RR@10"]
    ref = np.mean([reference(run, qrels, RR @ 10)[q] for q in qrels])
    assert rr == pytest.approx(ref, abs=1e-12)
    assert rr < 0.05


def test_values_are_bounded_by_one() -> None:
    run, qrels = random_collection(9)
    res = score_run(run, qrels, ALL)
    for values in res.per_query.values():
        assert all(0.0 <= v <= 1.0 for v in values.values())


def test_coverage_reports_queries_left_out() -> None:
    run = {"a": {"d1": 1.0}, "only_in_run": {"d1": 1.0}}
    qrels = {"a": {"d1": 1}, "only_in_qrels": {"d2": 1}, "no_rel": {"d1": 0}}
    run["no_rel"] = {"d1": 1.0}
    skip = score_run(run, qrels, [nDCG @ 10])
    assert skip.coverage.unjudged_queries == ["only_in_run"]
    assert skip.coverage.missing_queries == ["only_in_qrels"]
    assert skip.coverage.no_relevant_queries == ["no_rel"]
    assert set(skip.per_query["nDCG@10"]) == {"a", "no_rel"}
    zero = score_run(run, qrels, [nDCG @ 10], missing="zero")
    assert zero.per_query["nDCG@10"]["only_in_qrels"] == 0.0
    assert zero.mean["nDCG@10"] == pytest.approx(1 / 3)
    assert "scored 0" in zero.coverage.summary()


def test_nan_scores_are_rejected() -> None:
    with pytest.raises(DataError, match="NaN"):
        score_run({"q": {"a": float("nan")}}, {"q": {"a": 1}}, [nDCG @ 10])


def test_measure_objects_and_parser() -> None:
    assert nDCG @ 10 == parse_measure("ndcg@10") == parse_measure("NDCG_CUT_10")
    assert str(parse_measure("mrr@10")) == "RR@10"
    assert str(parse_measure("hit@5")) == "Success@5"
    assert str(parse_measure("map_cut_100")) == "AP@100"
    assert str(parse_measure("recall_100")) == "R@100"
    assert str(parse_measure("P.5")) == "P@5"
    assert parse_measures("ndcg@10, r@100,ndcg@10") == [nDCG @ 10, R @ 100]
    with pytest.raises(ConfigError) as e:
        parse_measure("bleu@4")
    for name in MEASURES:
        assert name in str(e.value)
    with pytest.raises(ConfigError, match="needs a cutoff"):
        parse_measure("P")
    with pytest.raises(ConfigError, match=">= 1"):
        nDCG @ 0
    with pytest.raises(ConfigError, match="no cutoff"):
        Rprec @ 5
    with pytest.raises(ConfigError, match="missing"):
        score_run({}, {}, [nDCG], missing="fill")  # type: ignore[arg-type]
