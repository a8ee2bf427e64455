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
from evals.pmrr import (
    PMRR,
    InstructionEval,
    InstructionPairs,
    changed_documents,
    evaluate_instruction_pairs,
    evaluate_pairs,
    load_followir,
    p_mrr,
    p_mrr_pair,
    write_followir,
)
from evals.runs import run_from_rankings
from evals.stance import scifact_stance_probe
from evals.stats import bonferroni, bootstrap_ci, holm, paired_t_test, randomization_test
from evals.trec import read_qrels, read_run, read_run_config, write_qrels, write_run

__all__ = [
    "ann_recall",
    "AnnRecall",
    "AP",
    "BEIR_MD5",
    "bonferroni",
    "bootstrap_ci",
    "changed_documents",
    "compare_systems",
    "Comparison",
    "content_survival",
    "Dataset",
    "download_beir",
    "EvalResult",
    "evaluate",
    "evaluate_instruction_pairs",
    "evaluate_pairs",
    "Hit",
    "holm",
    "InstructionEval",
    "InstructionPairs",
    "Judged",
    "load_beir",
    "load_followir",
    "write_followir",
    "Measure",
    "MRR",
    "nDCG",
    "P",
    "p_mrr",
    "p_mrr_pair",
    "paired_t_test",
    "parse_measure",
    "parse_measures",
    "PMRR",
    "R",
    "randomization_test",
    "read_qrels",
    "read_run",
    "read_run_config",
    "RetrievalSystem",
    "Rprec",
    "RR",
    "run_from_rankings",
    "RunScores",
    "scifact_rationale_units",
    "scifact_stance_probe",
    "score_run",
    "sentence_units",
    "StagedSystem",
    "StageResult",
    "Success",
    "Survival",
    "write_qrels",
    "write_run",
]
