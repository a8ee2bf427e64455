"""Synthetic test-set generation with a scripted generator (the filters are the thing under
test: cleaning, BM25 round-trip, dedup, resume, graded variants), and the query-similarity
splits."""

from __future__ import annotations

import json

import numpy as np
import pytest

from evals import load_beir
from evals.splits import max_similarity, score_split, similarity_split
from evals.synthetic import (
    Deduplicator,
    SynthConfig,
    clean_question,
    generate_synthetic,
    sample_documents,
)
from rag.core.errors import ConfigError
from rag.core.types import Document
from retrievers import BM25Retriever

PAD = " Further details of the study design and the cohort are given in the methods section."
CORPUS = [
    Document(id="aspirin", text="Aspirin irreversibly inhibits platelet cyclooxygenase." + PAD),
    Document(id="statin", text="Statins lower serum LDL cholesterol in adults." + PAD),
    Document(id="insulin", text="Insulin resistance precedes type 2 diabetes onset." + PAD),
    Document(id="vitd", text="Vitamin D deficiency is common among elderly patients." + PAD),
    Document(id="short", text="Too short."),
]
REPLIES = {  # keyed by a word of the passage -> what the scripted generator answers
    "Aspirin": "Question: Which enzyme does aspirin inhibit in platelets?\nIt is COX.",
    "Statins": "Which vitamin is deficient among elderly patients?",  # about another doc
    "Insulin": "The passage is about diabetes.",  # no question -> invalid
    "Vitamin": "1. Which enzyme does aspirin inhibit in platelets?",  # aspirin's, again
}


class Scripted:
    """Answers each prompt by the first key found in it; counts the prompts it saw."""

    def __init__(self, related: str = "Platelets are small blood cells.") -> None:
        self.calls: list[str] = []
        self.related = related

    def generate(self, prompts, max_new_tokens):
        self.calls += list(prompts)
        out = []
        for p in prompts:
            if p.startswith("Question:"):
                out.append(self.related)
                continue
            out.append(next(v for k, v in REPLIES.items() if k in p))
        return out


@pytest.fixture
def bm25():
    return BM25Retriever().index(CORPUS)


def test_clean_question():
    assert clean_question("Q1: What causes scurvy in sailors?") == "What causes scurvy in sailors?"
    reply = "\n\n- Why do statins lower LDL? Because..."
    assert clean_question(reply) == "Why do statins lower LDL?"
    assert clean_question("What is the answer to this question?") is None  # generic
    assert clean_question("Statins lower LDL.") is None
    assert clean_question("Why?") is None


def test_dedup_threshold():
    d = Deduplicator(0.8)
    assert d.add("Which enzyme does aspirin inhibit?")
    assert not d.add("which ENZYME does aspirin inhibit")
    assert d.add("Which cells does aspirin affect?")


def test_sampling_is_seeded_and_skips_short_docs():
    a = sample_documents(CORPUS, 10, seed=3, min_chars=40)
    assert [d.id for d in a] == [d.id for d in sample_documents(CORPUS, 10, seed=3, min_chars=40)]
    assert "short" not in {d.id for d in a} and len(a) == 4
    assert [d.id for d in sample_documents(CORPUS, 2, 3, 40)] == [d.id for d in a[:2]]


def test_filters_and_beir_output(tmp_path, bm25):
    gen = Scripted()
    cfg = SynthConfig(n_docs=10, seed=0, roundtrip_k=1, min_doc_chars=40)
    rep = generate_synthetic(CORPUS, gen, tmp_path, cfg, retriever=bm25, generator_name="scripted")
    # statin's and vitd's questions retrieve another document first; insulin's is no question
    assert (rep.sampled, rep.invalid, rep.roundtrip_failed, rep.duplicates) == (4, 1, 2, 0)
    assert rep.kept == 1
    ds = load_beir(tmp_path)
    assert [q.text for q in ds.queries] == ["Which enzyme does aspirin inhibit in platelets?"]
    assert ds.qrels == {"synth-0": {"aspirin": 1}}
    meta = json.loads((tmp_path / "queries.jsonl").read_text().splitlines()[0])["metadata"]
    assert meta["source_doc"] == "aspirin" and meta["roundtrip_rank"] == 1
    assert meta["generator"] == "scripted" and "synth_question" in meta["prompts"]
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["report"]["kept"] == 1 and manifest["config"]["roundtrip_k"] == 1


def test_roundtrip_off_keeps_more(tmp_path):
    cfg = SynthConfig(n_docs=10, seed=0, roundtrip_k=0, min_doc_chars=40)
    rep = generate_synthetic(CORPUS, Scripted(), tmp_path, cfg)
    assert (rep.kept, rep.roundtrip_failed, rep.duplicates) == (2, 0, 1)


def test_resume_generates_only_missing_docs(tmp_path, bm25):
    first = Scripted()
    generate_synthetic(CORPUS, first, tmp_path, SynthConfig(n_docs=2, roundtrip_k=0,
                                                          min_doc_chars=40))
    assert len(first.calls) == 2
    second = Scripted()
    rep = generate_synthetic(CORPUS, second, tmp_path, SynthConfig(n_docs=4, roundtrip_k=0,
                                                                  min_doc_chars=40))
    assert len(second.calls) == 2 and rep.resumed == 2
    assert len((tmp_path / "generated.jsonl").read_text().splitlines()) == 4


def test_graded_variant_adds_grade_one_passage(tmp_path, bm25):
    cfg = SynthConfig(n_docs=10, roundtrip_k=1, graded=True, min_doc_chars=40)
    generate_synthetic(CORPUS, Scripted(), tmp_path, cfg, retriever=bm25)
    ds = load_beir(tmp_path)
    assert ds.qrels == {"synth-0": {"aspirin": 2, "synth-0-related": 1}}
    assert any(d.id == "synth-0-related" and "Platelets" in d.text for d in ds.corpus)


def test_config_errors():
    with pytest.raises(ConfigError, match="n_docs"):
        SynthConfig(n_docs=0)
    with pytest.raises(ConfigError, match="retriever"):
        generate_synthetic(CORPUS, Scripted(), "/nonexistent", SynthConfig(roundtrip_k=3))


def test_similarity_split_and_scores():
    q = np.array([[1.0, 0.0], [0.0, 1.0], [0.7, 0.7], [-1.0, 0.0]])
    ref = np.array([[1.0, 0.0], [0.0, 2.0]])
    sims = max_similarity(q, ref)
    assert sims == pytest.approx([1.0, 1.0, np.sqrt(0.5), 0.0])
    split = similarity_split(["a", "b", "c", "d"], q, ref, fraction=0.5)
    assert split.interpolation == ["a", "b"] and split.extrapolation == ["c", "d"]
    out = score_split({"a": 1.0, "b": 0.5, "c": 0.2, "d": 0.0}, split)
    assert out["interpolation"]["mean"] == 0.75 and out["gap"] == pytest.approx(0.65)
    split2 = similarity_split(["a", "b", "c", "d"], q, ref, 0.5, reference_ids=["a"])
    assert "a" not in split2.similarity
    with pytest.raises(ConfigError, match="fraction"):
        similarity_split(["a"], q[:1], ref, fraction=0.9)


@pytest.mark.slow
def test_cli_eval_synth_with_smollm2_then_rag_eval(tmp_path):
    from rag.app.cli import main
    from tests.conftest import dataset_dir

    cfg = tmp_path / "bm25.json"
    cfg.write_text(json.dumps(BM25Retriever().to_config()))
    out = tmp_path / "synth"
    args = ["eval-synth", "--dataset", str(dataset_dir("adi")), "--out", str(out), "--n-docs",
            "3", "--roundtrip-k", "0", "--device", "cpu", "--config", str(cfg), "--no-progress"]
    assert main(args) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["report"]["sampled"] == 3 and manifest["generator"] == "smollm2-135m"
    assert (out / "report" / "results.json").exists() and (out / "report" / "report.html").exists()
