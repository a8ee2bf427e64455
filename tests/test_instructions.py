"""Instruction following: p-MRR, model-family instruction templates, the SciFact stance probe,
and ThinkRetriever (with the real packaged SmolLM2 on a few queries)."""

from __future__ import annotations

import json

import pytest
from conftest import dataset_dir

from evals.pmrr import (
    changed_documents,
    evaluate_instruction_pairs,
    load_followir,
    p_mrr,
    p_mrr_pair,
)
from prompts.instructions import format_query, template_for
from rag.errors import ConfigError, DataError
from rag.nodes import Node
from rag.types import Query

# -- p-MRR ----------------------------------------------------------------------------------


def test_p_mrr_pair_worked_examples():
    # a changed document should fall: 1 -> 3 is good, 4 -> 2 is bad, unmoved is 0
    assert p_mrr_pair(1, 3) == pytest.approx(1 - 1 / 3)
    assert p_mrr_pair(4, 2) == pytest.approx(2 / 4 - 1)
    assert p_mrr_pair(7, 7) == 0.0
    assert p_mrr_pair(10, 1) == pytest.approx(-0.9)
    with pytest.raises(ConfigError, match="ranks start at 1"):
        p_mrr_pair(0, 2)


def test_p_mrr_matches_mteb_reference_cases():
    # the cases of MTEB's tests/test_evaluators (calculate_pmrr)
    og = {"a": {"0": 1, "1": 2, "2": 3, "3": 4}}
    assert p_mrr(og, og, {"a": ["0"]}).mean == 0.0
    new = {"a": {"0": 4, "1": 1, "2": 2, "3": 3}}
    assert p_mrr(og, new, {"a": ["0"]}).mean == -0.75
    assert p_mrr(new, og, {"a": ["0"]}).mean == 0.75
    tied = {"0": 0.5, "1": 0.5, "2": 0.5}  # ties must not depend on dict order
    assert p_mrr({"a": tied}, {"a": dict(reversed(tied.items()))}, {"a": ["0"]}).mean == 0.0


def test_p_mrr_averages_per_query_then_over_queries_and_ranks_missing_docs_last():
    og = {"q1": {"a": 3.0, "b": 2.0, "c": 1.0}, "q2": {"x": 1.0}}
    new = {"q1": {"c": 3.0, "b": 2.0, "a": 1.0}, "q2": {"y": 1.0}}
    res = p_mrr(og, new, {"q1": ["a", "c"], "q2": ["x"], "q3": ["z"]})
    # q1: a 1 -> 3 (+2/3), c 3 -> 1 (-2/3) -> 0; q2: x 1 -> missing = len(run) + 1 = 2 -> +1/2
    assert res.per_query == pytest.approx({"q1": 0.0, "q2": 0.5})
    assert res.mean == pytest.approx(0.25)
    assert res.n_pairs == 3 and res.skipped == ["q3"]
    with pytest.raises(ConfigError, match="in both runs"):
        p_mrr(og, new, {"q9": ["a"]})


def test_changed_documents():
    og = {"q1": {"a": 1, "b": 2, "c": 0}, "q2": {"x": 1}}
    new = {"q1": {"a": 1, "b": 0}, "q2": {"x": 1}}
    assert changed_documents(og, new) == {"q1": ["b"]}


def test_load_followir_absent_and_layout(tmp_path):
    with pytest.raises(DataError, match="qrels/og.tsv"):
        load_followir(tmp_path / "nope")
    root = tmp_path / "core17"
    (root / "qrels").mkdir(parents=True)
    (root / "corpus.jsonl").write_text('{"_id": "d1", "text": "t"}\n{"_id": "d2", "text": "u"}\n')
    row = {"_id": "1", "text": "q", "instruction_og": "any", "instruction_changed": "only u"}
    (root / "queries.jsonl").write_text(json.dumps(row) + "\n")
    (root / "qrels" / "og.tsv").write_text("query-id\tcorpus-id\tscore\n1\td1\t1\n1\td2\t1\n")
    (root / "qrels" / "changed.tsv").write_text("query-id\tcorpus-id\tscore\n1\td2\t1\n")
    pairs = load_followir(root)
    assert pairs.original_queries[0].instruction == "any"
    assert pairs.altered_queries[0].instruction == "only u"
    assert changed_documents(pairs.qrels_og, pairs.qrels_changed) == {"1": ["d1"]}


# -- templates ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model_id", "family"),
    [
        ("intfloat/e5-mistral-7b-instruct", "e5-mistral-instruct"),
        ("intfloat/multilingual-e5-large-instruct", "e5-mistral-instruct"),
        ("intfloat/e5-base-v2", "e5"),
        ("intfloat/multilingual-e5-small", "e5"),
        ("BAAI/bge-large-en-v1.5", "bge-en-v1.5"),
        ("nvidia/NV-Embed-v2", "nv-embed"),
        ("Qwen/Qwen3-Embedding-0.6B", "qwen3-embedding"),
        ("Alibaba-NLP/gte-Qwen2-7B-instruct", "gte-qwen2-instruct"),
        ("minilm", "none"),
        ("sentence-transformers/all-MiniLM-L6-v2", "none"),
        ("some/unknown-model", "none"),
    ],
)
def test_template_for_model_id(model_id, family):
    assert template_for(model_id).name == family


def test_format_query_is_query_side_and_uses_the_instruction():
    q = Query(text="what is bm25", instruction="Find definitions.")
    assert format_query(template_for("e5-base-v2"), q) == "query: what is bm25"
    assert template_for("e5-base-v2").document_prefix == "passage: "
    bge = format_query(template_for("BAAI/bge-base-en-v1.5"), q)
    assert bge == "Represent this sentence for searching relevant passages: what is bm25"
    mistral = template_for("intfloat/e5-mistral-7b-instruct")
    assert format_query(mistral, q) == "Instruct: Find definitions.\nQuery: what is bm25"
    plain = Query(text="what is bm25")
    assert format_query(mistral, plain, default_task="T").startswith("Instruct: T\nQuery: ")
    assert format_query(template_for("Qwen/Qwen3-Embedding-4B"), q).endswith("Query:what is bm25")
    assert format_query(template_for("minilm"), q) == "what is bm25"
    assert template_for("minilm", family="e5").name == "e5"  # explicit override wins
    with pytest.raises(ConfigError, match="unknown instruction family 'e6'"):
        template_for("x", family="e6")


def test_dense_auto_template_resolves_from_the_encoder():
    from rag.encoders import TransformerEncoder
    from retrievers import DenseRetriever

    q = Query(text="what is bm25", instruction="Find definitions.")
    auto = DenseRetriever(instruction_template="auto")
    assert not auto.uses_instruction and auto.query_text(q) == "what is bm25"
    mistral = DenseRetriever(
        TransformerEncoder("intfloat/e5-mistral-7b-instruct"), None, instruction_template="auto"
    )
    assert mistral.uses_instruction
    assert mistral.query_text(q) == "Instruct: Find definitions.\nQuery: what is bm25"
    assert DenseRetriever(instruction_template="e5").query_text(q) == "query: what is bm25"
    assert Node.from_config(mistral.to_config()).to_config() == mistral.to_config()
    with pytest.raises(ConfigError, match="be 'auto' or name a family"):
        DenseRetriever(instruction_template="nonsense")


# -- stance probe ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def probe():
    from evals.stance import scifact_stance_probe

    return scifact_stance_probe(dataset_dir("scifact"))


def test_stance_probe_counts(probe):
    # evidence.jsonl test split: 209 (claim, abstract) rows, 188 claims, 138 SUPPORT, 71 CONTRADICT
    assert len(probe.original_queries) == len(probe.altered_queries) == 188
    assert sum(len(v) for v in probe.qrels_og.values()) == 209
    changed = changed_documents(probe.qrels_og, probe.qrels_changed)
    assert sum(len(v) for v in changed.values()) == 209  # no claim has both stances
    inst = [q.instruction for q in probe.altered_queries]
    assert inst.count("Only abstracts whose evidence contradicts the claim.") == 124
    assert inst.count("Only abstracts whose evidence supports the claim.") == 64
    assert {q.instruction for q in probe.original_queries} == {
        "Find abstracts with evidence about the claim."
    }
    assert [q.text for q in probe.original_queries] == [q.text for q in probe.altered_queries]
    assert len(probe.corpus) == 5183 and probe.notes == []


def test_bm25_ignores_instructions_so_p_mrr_is_zero(probe):
    from retrievers import BM25Retriever

    bm25 = BM25Retriever().index(probe.corpus)
    res = evaluate_instruction_pairs(
        bm25, probe.original_queries, probe.altered_queries, probe.qrels_og, probe.qrels_changed
    )
    assert res.p_mrr.mean == 0.0 and res.p_mrr.n_pairs == 209
    # the 188 claims with rationales are easier for BM25 than all 300 (0.676): 0.830 here
    assert 0.78 < res.ndcg10_og < 0.88
    assert res.ndcg10_changed is None  # no relevant document is left under the altered one


# -- ThinkRetriever -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def think(smollm, demo_docs):
    from retrievers import BM25Retriever
    from retrievers.think import ThinkRetriever

    return ThinkRetriever(BM25Retriever(), smollm, max_new_tokens=24).index(demo_docs)


def test_think_caches_thoughts_and_passes_the_instruction(think, monkeypatch):
    calls = []
    real = think.generator.generate

    def counting(messages, **kw):
        calls.append(messages[0]["content"])
        return real(messages, **kw)

    monkeypatch.setattr(think.generator, "generate", counting)
    q = Query(id="q1", text="Which planet is the largest?")
    qi = q.model_copy(update={"instruction": "Only gas giants."})
    first = think.retrieve(q, k=3)
    again = think.retrieve(q.model_copy(update={"id": "other"}), k=3)
    assert first.ids == again.ids and len(calls) == 1
    assert again.provenance["thought"] and again.provenance["thought"] == think.thought(q)
    think.retrieve(qi, k=3)
    assert len(calls) == 2 and "Instruction: Only gas giants." in calls[1]
    assert think.uses_instruction


def test_think_modes(think, demo_docs):
    from retrievers import BM25Retriever
    from retrievers.fusion import rrf
    from retrievers.think import ThinkRetriever

    q = Query(id="q2", text="moons of Mars")
    inner = think.retriever
    gen = think.generator
    as_query = ThinkRetriever(BM25Retriever(), gen, mode="query").index(demo_docs)
    plain = as_query.retrieve(q, k=5)
    assert plain.ids == inner.retrieve(q, k=5).ids and "thought" not in plain.provenance
    thought = think.thought(q)
    expanded = q.model_copy(update={"text": f"{q.text}\n{thought}"})
    as_thought = ThinkRetriever(BM25Retriever(), gen, mode="thought", max_new_tokens=24)
    as_thought.index(demo_docs)
    got = as_thought.retrieve(q, k=5)
    assert got.ids == inner.retrieve(expanded, k=5).ids
    assert got.provenance == {"thought": thought}  # greedy: the same thought again
    fused = rrf([inner.retrieve(q, k=100), inner.retrieve(expanded, k=100)], k=5)
    assert think.retrieve(q, k=5).ids == fused.ids
    with pytest.raises(ConfigError, match="mode must be one of"):
        ThinkRetriever(inner, gen, mode="hyde")


def test_think_config_round_trip():
    from rag.generators import TransformersGenerator
    from retrievers import BM25Retriever
    from retrievers.think import ThinkRetriever

    r = ThinkRetriever(BM25Retriever(), TransformersGenerator(max_new_tokens=16), mode="thought")
    cfg = json.loads(json.dumps(r.to_config()))
    assert cfg["retriever"]["type"] == "bm25"
    assert cfg["generator"]["type"] == "transformers_generator"
    rebuilt = Node.from_config(cfg)
    assert type(rebuilt) is ThinkRetriever and rebuilt.to_config() == cfg


def test_think_cache_is_bounded_and_saved_with_the_index(think, demo_docs, tmp_path, monkeypatch):
    from rag.persist import load_retriever
    from retrievers import BM25Retriever
    from retrievers.think import ThinkRetriever

    qs = [Query(id=f"q{i}", text=t) for i, t in enumerate(["rings of Saturn", "red planet"])]
    small = ThinkRetriever(BM25Retriever(), think.generator, max_new_tokens=24, cache_size=1)
    small.index(demo_docs)
    small.retrieve_batch(qs, k=3)
    assert [key[0] for key in small._thoughts] == ["red planet"]  # the older one was dropped
    think.retrieve_batch(qs, k=3)
    before = {q.id: think.thought(q) for q in qs}
    ranked = think.retrieve_batch(qs, k=3)
    from rag.index import write_index
    reopened = load_retriever(write_index(think, tmp_path / "idx"))

    def no_generation(*a, **kw):
        raise AssertionError("a saved thought was generated again")

    monkeypatch.setattr(reopened.generator, "generate", no_generation)
    assert {q.id: reopened.thought(q) for q in qs} == before
    assert [r.ids for r in reopened.retrieve_batch(qs, k=3)] == [r.ids for r in ranked]
    assert isinstance(reopened.retriever, BM25Retriever)
    assert len(reopened.retriever) == len(demo_docs)


def test_followir_folder_round_trip_runs_the_same_harness(probe, tmp_path, minilm):
    """The stance probe written as a FollowIR folder (both our layout and MTEB's local one, with
    top_ranked candidates) loads back to the same pairs and scores the same."""
    from dataclasses import replace

    from evals.pmrr import evaluate_pairs, write_followir
    from rerankers import EmbeddingReranker
    from retrievers import BM25Retriever

    bm25 = BM25Retriever().index(probe.corpus)
    n = 12
    sub = replace(
        probe,
        original_queries=probe.original_queries[:n],
        altered_queries=probe.altered_queries[:n],
        candidates={r.query.id: r.ids for r in bm25.retrieve_batch(probe.original_queries[:n], 8)},
    )
    root = write_followir(sub, tmp_path / "stance")
    mteb = tmp_path / "stance-mteb"
    root.rename(mteb)
    (mteb / "qrels_og").mkdir()
    (mteb / "qrels_changed").mkdir()
    (mteb / "qrels" / "og.tsv").rename(mteb / "qrels_og" / "test.tsv")
    (mteb / "qrels" / "changed.tsv").rename(mteb / "qrels_changed" / "test.tsv")
    (mteb / "qrels").rmdir()
    loaded = load_followir(mteb)
    assert [q.text for q in loaded.original_queries] == [q.text for q in sub.original_queries]
    assert [q.instruction for q in loaded.altered_queries] == [
        q.instruction for q in sub.altered_queries
    ]
    assert loaded.candidates == sub.candidates and len(loaded.corpus) == len(probe.corpus)
    # qrels of all 188 claims were written; only the 12 queries are kept in the queries
    assert evaluate_pairs(bm25, loaded).model_dump() == evaluate_pairs(bm25, sub).model_dump()
    # a reranker reorders the candidates only; MiniLM rescoring ignores the instruction: p-MRR 0
    emb = EmbeddingReranker(encoder=minilm)
    res = evaluate_pairs(emb, loaded, k=8)
    assert res.p_mrr.mean == 0.0 and res.n_queries == n
    with pytest.raises(ConfigError, match="no candidates"):
        evaluate_pairs(emb, replace(loaded, candidates={}))
