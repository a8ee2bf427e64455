"""Retrieval measures, trec_eval-exact: objects (``nDCG @ 10``), kernels and :func:`score_run`."""

from evals.measures.ap import AP, MAP, AveragePrecision
from evals.measures.base import (
    ALIASES,
    MEASURES,
    Measure,
    accepted_names,
    parse_measure,
    parse_measures,
)
from evals.measures.compute import Coverage, RunScores, score_run
from evals.measures.judged import Judged, JudgedRate
from evals.measures.ndcg import NDCG, nDCG
from evals.measures.precision import P, Precision
from evals.measures.prepare import UNJUDGED, Prepared, Qrels, Run, prepare
from evals.measures.recall import R, Recall
from evals.measures.rprec import Rprec, RPrecision
from evals.measures.rr import MRR, RR, ReciprocalRank
from evals.measures.success import Hit, Success, SuccessRate

__all__ = [
    "ALIASES",
    "AP",
    "AveragePrecision",
    "Coverage",
    "Hit",
    "Judged",
    "JudgedRate",
    "MAP",
    "MEASURES",
    "MRR",
    "Measure",
    "NDCG",
    "P",
    "Precision",
    "Prepared",
    "Qrels",
    "R",
    "RPrecision",
    "RR",
    "Recall",
    "ReciprocalRank",
    "Rprec",
    "Run",
    "RunScores",
    "Success",
    "SuccessRate",
    "UNJUDGED",
    "accepted_names",
    "nDCG",
    "parse_measure",
    "parse_measures",
    "prepare",
    "score_run",
]
