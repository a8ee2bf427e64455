"""Every reranker keeps the same promises (rag.core.nodes): a new ranking of the input's documents,
sorted by score (ties by id), unique ids, at most k, inputs untouched, deterministic, config
round-trip. Real models only: MiniLM, a tiny cross-encoder built from a config, SmolLM2-135M."""

from __future__ import annotations

import json

import pytest
from conftest import SHARED

from rag.core.encoders import TransformerEncoder
from rag.core.errors import ConfigError
from rag.core.nodes import BaseReranker, Node, Reranker
from rag.core.types import Document, Query, Ranking
from rerankers import (
    CascadeReranker,
    CrossEncoderReranker,
    EmbeddingReranker,
    LLMListwiseReranker,
    LLMPointwiseReranker,
    RelevanceFilter,
)

torch = pytest.importorskip("torch")
ADI = SHARED / "adi"


@pytest.fixture(scope="module")
def docs() -> list[Document]:
    if not ADI.is_dir():
        pytest.skip("shared datasets not found")
    rows = [json.loads(line) for line in (ADI / "corpus.jsonl").open(encoding="utf-8")]
    return [Document(id=r["_id"], title=r["title"], text=r["text"]) for r in rows[:6]]


@pytest.fixture(scope="module")
def tiny_ce(tmp_path_factory) -> str:
    from test_rerankers_cross_encoder import tiny_checkpoint

    return tiny_checkpoint(tmp_path_factory.mktemp("ce"), 1)


FACTORIES = {
    "cross_encoder": lambda ce: CrossEncoderReranker(ce, max_length=64, precision="fp32"),
    "embedding": lambda ce: EmbeddingReranker(TransformerEncoder("minilm", max_length=64)),
    "llm_pointwise": lambda ce: LLMPointwiseReranker(backend="transformers", max_passage_tokens=16),
    "llm_listwise": lambda ce: LLMListwiseReranker(
        backend="transformers", full_list=True, max_passage_tokens=8
    ),
    "cascade": lambda ce: CascadeReranker(
        [
            (EmbeddingReranker(TransformerEncoder("minilm", max_length=64)), 4),
            (CrossEncoderReranker(ce, max_length=64, precision="fp32"), 3),
        ]
    ),
    "relevance_filter": lambda ce: RelevanceFilter(threshold=0.3, min_k=1),
}


@pytest.fixture(scope="module", params=sorted(FACTORIES))
def reranker(request, tiny_ce) -> BaseReranker:
    torch.set_num_threads(2)
    return FACTORIES[request.param](tiny_ce)


def test_contract(reranker: BaseReranker, docs: list[Document]) -> None:
    assert isinstance(reranker, Reranker)
    q = Query(text="computer systems for information retrieval", id="q1")
    # a duplicate id in the input: one copy survives
    r = Ranking.from_scored(q, ((d, float(-i)) for i, d in enumerate(docs)))
    r = r.model_copy(update={"hits": (*r.hits, r.hits[0])})
    empty = Ranking(query=Query(text="nothing", id="q2"))
    frozen = [r.model_copy(deep=True), empty.model_copy(deep=True)]
    out = reranker.rerank_batch([r, empty], k=3)
    assert [r, empty] == frozen  # inputs untouched
    assert len(out) == 2 and len(out[1]) == 0
    first = out[0]
    assert first is not r and first.query == q
    assert 1 <= len(first) <= 3
    assert len(set(first.ids)) == len(first.ids)
    assert set(first.ids) <= {d.id for d in docs}
    keys = [(-h.score, h.id) for h in first.hits]
    if reranker.name != "llm_listwise":  # listwise scores are distinct ranks, no ties to break
        assert keys == sorted(keys)
    assert first.scores == sorted(first.scores, reverse=True)
    big = reranker.rerank(r, k=100)  # k beyond the candidates
    assert len(big) <= len(docs)
    assert reranker.rerank(r, k=3) == first  # deterministic
    with pytest.raises(ConfigError):
        reranker.rerank(r, k=0)


def test_config_round_trip(reranker: BaseReranker) -> None:
    cfg = reranker.to_config()
    assert json.loads(json.dumps(cfg)) == cfg
    again = Node.from_config(cfg)
    assert again == reranker and again is not reranker
    assert type(again).uses_instruction == type(reranker).uses_instruction


def test_llm_rerankers_declare_instruction_use() -> None:
    assert LLMPointwiseReranker.uses_instruction and LLMListwiseReranker.uses_instruction
    assert not CrossEncoderReranker.uses_instruction


@pytest.mark.parametrize(
    "build",
    [
        lambda: CrossEncoderReranker("m", activation="softmax"),
        lambda: CrossEncoderReranker("m", max_length=2),
        lambda: LLMPointwiseReranker(backend="onnx"),
        lambda: LLMListwiseReranker(window=5, step=5),
        lambda: LLMListwiseReranker(passes=0),
        lambda: CascadeReranker([]),
        lambda: CascadeReranker([(EmbeddingReranker(), 5), (EmbeddingReranker(), 10)]),
        lambda: CascadeReranker([("embedding", 5)]),
        lambda: RelevanceFilter(threshold=2.0),
        lambda: RelevanceFilter(weights=[-1, 0, 0, 0]),
        lambda: EmbeddingReranker(cache_size=-1),
    ],
)
def test_bad_configs_fail_at_construction(build) -> None:
    with pytest.raises(ConfigError):
        build()


def test_construction_is_cheap() -> None:
    rr = LLMListwiseReranker(model="no/such-model-anywhere")
    assert not rr._loaded and rr.to_config()["model"] == "no/such-model-anywhere"
