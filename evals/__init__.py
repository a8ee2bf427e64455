"""Evaluation: trec_eval-exact measures, BEIR/TREC I/O, the per-stage harness, statistics,
ANN-vs-exact recall and reports. See ``docs/evaluation.md``."""

from evals.ann import AnnRecall, ann_recall
from evals.compare import Comparison, compare_systems
from evals.compression import Survival, content_survival, scifact_rationale_units, sentence_units
from evals.datasets import Dataset, load_beir
from evals.download import BEIR_MD5, download_beir
from evals.harness import EvalResult, RetrievalSystem, StagedSystem, StageResult, evaluate
from evals.measures import (
    AP,
    MRR,
    RR,
    Hit,
    Judged,
    Measure,
    P,
    R,
    Rprec,
    RunScores,
    Success,
    nDCG,
    parse_measure,
    parse_measures,
    score_run,
)
from evals.runs import run_from_rankings
from evals.stats import bonferroni, bootstrap_ci, holm, paired_t_test, randomization_test
from evals.trec import read_qrels, read_run, read_run_config, write_qrels, write_run

__all__ = [
    "AP",
    "AnnRecall",
    "BEIR_MD5",
    "Comparison",
    "Dataset",
    "EvalResult",
    "Hit",
    "Judged",
    "MRR",
    "Measure",
    "P",
    "R",
    "RR",
    "RetrievalSystem",
    "Rprec",
    "RunScores",
    "StageResult",
    "StagedSystem",
    "Success",
    "Survival",
    "ann_recall",
    "bonferroni",
    "bootstrap_ci",
    "compare_systems",
    "content_survival",
    "download_beir",
    "evaluate",
    "holm",
    "load_beir",
    "nDCG",
    "paired_t_test",
    "parse_measure",
    "parse_measures",
    "randomization_test",
    "read_qrels",
    "read_run",
    "read_run_config",
    "run_from_rankings",
    "score_run",
    "scifact_rationale_units",
    "sentence_units",
    "write_qrels",
    "write_run",
]
