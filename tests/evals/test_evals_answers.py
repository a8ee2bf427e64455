"""Answer-level metrics on hand-made cases (lexical judge, so every verdict is predictable),
the report's calibration, and ``rag eval-answers`` end to end."""

from __future__ import annotations

import json

import numpy as np
import pytest

from evals.answer_report import UNCALIBRATED, build_report, to_html, to_markdown
from evals.answers import answer_metrics, exact_match, judge_agreement, split_claims, token_f1
from rag.core.types import Answer, Document, Hit, Query
from rag.pipeline.judges import LexicalJudge

CONTEXTS = (
    "Paris is the capital of France.",
    "The Eiffel Tower stands in Paris.",
    "Bananas are yellow fruit.",
)


def answer(text: str, qid: str = "q1", question: str = "What is the capital of France?") -> Answer:
    hits = tuple(
        Hit(document=Document(id=f"d{i}", text=t), score=1.0) for i, t in enumerate(CONTEXTS, 1)
    )
    return Answer(query=Query(id=qid, text=question), text=text, contexts=hits)


def test_split_claims_keeps_markers_and_drops_empty():
    assert split_claims("A is B [1]. C is D [2]!  [3].") == ["A is B [1].", "C is D [2]!"]


def test_exact_match_and_token_f1():
    assert exact_match("The capital is Paris [1].", ["capital is Paris"]) == 1.0
    assert exact_match("Paris, France", ["Paris"]) == 0.0
    # pred {paris, france} vs gold {paris}: P = 1/2, R = 1 -> F1 = 2/3
    assert token_f1("Paris, France", ["Paris"]) == pytest.approx(2 / 3)
    assert token_f1("Lyon", ["Paris", "Lyon"]) == 1.0
    assert token_f1("", ["Paris"]) == 0.0


def test_faithfulness_and_alce_citation_precision_recall():
    a = answer(
        "Paris is the capital of France [1][3]. The Eiffel Tower stands in Paris [2]. "
        "Bananas are blue vegetables [3]."
    )
    m = answer_metrics([a], LexicalJudge())["q1"]
    # claim 1 supported by [1]+[3]; [3] alone does not support it and [1] alone does -> [3]
    # is an unneeded citation. Claim 2 supported by [2]. Claim 3 shares 1/3 words with [3].
    assert m["faithfulness"] == pytest.approx(2 / 3)
    assert m["citation_recall"] == pytest.approx(2 / 3)
    assert m["citation_precision"] == pytest.approx(2 / 4)
    assert m["answer_relevance"] == 1.0


def test_uncited_claim_is_judged_against_all_contexts_but_not_recalled():
    m = answer_metrics([answer("Bananas are yellow fruit.")], LexicalJudge())["q1"]
    assert m["faithfulness"] == 1.0
    assert m["citation_recall"] == 0.0
    assert "citation_precision" not in m  # no citation to be precise about


def test_citation_needed_jointly_counts_as_precise():
    # "capital france eiffel tower": [1] and [2] each cover 2/4 < 0.6, together 4/4
    m = answer_metrics([answer("Capital France Eiffel Tower [1][2].")], LexicalJudge(), None,
                       threshold=0.6)["q1"]
    assert m["citation_recall"] == 1.0
    assert m["citation_precision"] == 1.0


def test_references_only_metrics_and_duplicate_ids():
    out = answer_metrics([answer("Paris")], None, {"q1": ["Paris"]})
    assert out == {"q1": {"exact_match": 1.0, "token_f1": 1.0}}
    with pytest.raises(Exception, match="distinct"):
        answer_metrics([answer("x"), answer("y")])


def _per_query(n: int = 30) -> dict[str, dict[str, float]]:
    rng = np.random.default_rng(0)
    return {f"q{i}": {"faithfulness": float(rng.random()), "token_f1": 0.5} for i in range(n)}


def test_report_without_labels_says_uncalibrated():
    rep = build_report(_per_query(), judge="lexical")
    assert rep.aggregate["faithfulness"]["calibration"] == UNCALIBRATED
    assert "calibration" not in rep.aggregate["token_f1"]
    md = to_markdown(rep)
    assert "faithfulness †" in md and UNCALIBRATED in md
    assert "<table" in to_html(rep)


def test_report_with_labels_gives_agreement_and_ppi():
    pq = _per_query()
    first = list(pq.items())[:10]
    labels = {q: {"faithfulness": float(v["faithfulness"] >= 0.5)} for q, v in first}
    cal = build_report(pq, labels, judge="lexical").aggregate["faithfulness"]["calibration"]
    assert cal["agreement"]["accuracy"] == 1.0 and cal["agreement"]["n"] == 10
    assert cal["ppi"]["n_labelled"] == 10 and cal["ppi"]["n_unlabelled"] == 20
    assert cal["ppi"]["lo"] < cal["ppi"]["estimate"] < cal["ppi"]["hi"]


def test_judge_agreement_counts_only_shared_ids():
    out = judge_agreement({"a": 0.9, "b": 0.1, "c": 0.8}, {"a": 1, "b": 1, "z": 0})
    assert out["n"] == 2 and out["accuracy"] == 0.5


def test_cli_eval_answers_writes_reports(tmp_path):
    from rag.app.cli import main

    answers = tmp_path / "answers.jsonl"
    rows = [
        answer("Paris is the capital of France [1].", "q1"),
        answer("Bananas are blue vegetables [3].", "q2"),
        answer("The Eiffel Tower stands in Paris [2].", "q3"),
    ]
    answers.write_text("".join(a.model_dump_json() + "\n" for a in rows))
    labels = tmp_path / "labels.jsonl"
    labels.write_text(
        '{"query-id": "q1", "faithfulness": 1}\n{"query-id": "q2", "faithfulness": 0}\n'
    )
    out = tmp_path / "out"
    rc = main(["eval-answers", "--answers", str(answers), "--out", str(out), "--judge",
               "lexical", "--labels", str(labels)])
    assert rc == 0
    data = json.loads((out / "answers.json").read_text())
    assert data["per_query"]["q2"]["faithfulness"] == 0.0
    cal = data["aggregate"]["faithfulness"]["calibration"]
    assert cal["agreement"]["accuracy"] == 1.0
    assert (out / "answers.md").exists() and (out / "answers.html").exists()
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "no query"}\n')
    assert main(["eval-answers", "--answers", str(bad), "--out", str(out), "--judge", "none"]) == 2
