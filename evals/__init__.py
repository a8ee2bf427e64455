"""Evaluation: trec_eval-exact measures, BEIR/TREC I/O, the per-stage harness, statistics,
ANN-vs-exact recall, reports, synthetic test sets, answer-level judges with PPI calibration and
interpolation/extrapolation splits. See ``docs/evaluation.md``."""

from evals.ann import AnnRecall, ann_recall
from evals.answer_report import AnswerReport, build_report
from evals.answers import answer_metrics, exact_match, judge_agreement, split_claims, token_f1
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
from evals.ppi import MeanCI, classical_mean_ci, ppi_experiment, ppi_mean_ci
from evals.runs import run_from_rankings
from evals.splits import QuerySplit, score_split, similarity_split
from evals.stance import scifact_stance_probe
from evals.stats import (
    bonferroni,
    bootstrap_ci,
    holm,
    paired_t_test,
    randomization_test,
    wilson_ci,
)
from evals.synthetic import SynthConfig, SynthReport, generate_synthetic
from evals.trec import read_qrels, read_run, read_run_config, write_qrels, write_run
from rag.pipeline.judges import LexicalJudge, LLMJudge

__all__ = [
    "ann_recall",
    "AnnRecall",
    "answer_metrics",
    "AnswerReport",
    "AP",
    "BEIR_MD5",
    "bonferroni",
    "bootstrap_ci",
    "build_report",
    "changed_documents",
    "classical_mean_ci",
    "compare_systems",
    "Comparison",
    "content_survival",
    "Dataset",
    "download_beir",
    "EvalResult",
    "evaluate",
    "evaluate_instruction_pairs",
    "evaluate_pairs",
    "exact_match",
    "generate_synthetic",
    "Hit",
    "holm",
    "InstructionEval",
    "InstructionPairs",
    "judge_agreement",
    "Judged",
    "LexicalJudge",
    "LLMJudge",
    "load_beir",
    "load_followir",
    "write_followir",
    "MeanCI",
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
    "ppi_experiment",
    "ppi_mean_ci",
    "QuerySplit",
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
    "score_split",
    "sentence_units",
    "similarity_split",
    "split_claims",
    "StagedSystem",
    "StageResult",
    "Success",
    "Survival",
    "SynthConfig",
    "SynthReport",
    "token_f1",
    "wilson_ci",
    "write_qrels",
    "write_run",
]
