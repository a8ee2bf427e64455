"""LLM rerankers: label tokens, batching, prompts, the sliding window and the real SmolLM2 path.

The window mechanics are checked with a deterministic stand-in LM that sorts the passages it is
shown by the number they carry (what a perfect listwise model would do); the real SmolLM2-135M runs
on one short ranking per mode (CPU generation is slow).
"""

from __future__ import annotations

import re

import numpy as np
import pytest

from rag.core.types import Document, Query, Ranking
from rerankers import LLMListwiseReranker, LLMPointwiseReranker
from rerankers.llm_listwise import ANSWER_CHARS

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")


def ranking(
    n: int, query: str = "which value is largest", instruction: str | None = None
) -> Ranking:
    # passage i carries the value (i * 7) % n: the ideal order is by value, descending
    docs = [Document(id=f"d{i}", text=f"value {(i * 7) % n}") for i in range(n)]
    q = Query(text=query, id="q", instruction=instruction)
    return Ranking.from_scored(q, ((d, float(n - i)) for i, d in enumerate(docs)))


class SortingLM:
    """Answers a listwise prompt with the passages sorted by their ``value``, best first."""

    backend = "fake"
    provenance = {"backend": "fake", "backend_version": "0", "model": "sorter"}

    def __init__(self) -> None:
        self.calls: list[int] = []

    def truncate(self, texts, max_tokens):
        return list(texts)

    def generate(self, prompts, max_new_tokens, allowed_chars=None, prefix=""):
        out = []
        for p in prompts:
            vals = [int(v) for v in re.findall(r"^\[\d+\] value (\d+)$", p, flags=re.M)]
            self.calls.append(len(vals))
            order = sorted(range(len(vals)), key=lambda i: -vals[i])
            out.append(" > ".join(f"[{i + 1}]" for i in order))
        return out


class Sorting(LLMListwiseReranker):
    def _load(self) -> None:
        self.lm = SortingLM()
        self.template = "rerank_listwise"


def values(r: Ranking) -> list[int]:
    return [int(h.document.text.split()[1]) for h in r.hits]


def test_full_list_is_one_prompt_and_sorts_everything() -> None:
    rr = Sorting(full_list=True)
    out = rr.rerank(ranking(30))
    assert rr.lm.calls == [30]
    assert values(out) == sorted(range(30), reverse=True)
    assert out.scores == [float(30 - i) for i in range(30)]  # rank-derived scores


def test_sliding_window_bubbles_the_best_to_the_top() -> None:
    rr = Sorting(window=6, step=3)
    out = rr.rerank(ranking(20), k=5)
    assert rr.lm.calls == [6, 6, 6, 6, 6, 5]  # windows (14,20) ... (0,5)
    assert values(out)[:3] == [19, 18, 17]  # one bottom-up pass fixes the top window-step ranks
    assert len(out) == 5
    two = Sorting(window=6, step=3, passes=2).rerank(ranking(20))
    assert values(two)[:5] == [19, 18, 17, 16, 15]  # a second pass fixes the next ones


def test_listwise_batches_queries_in_lockstep_and_keeps_inputs() -> None:
    rs = [ranking(12), ranking(3), ranking(1)]
    frozen = [r.model_copy(deep=True) for r in rs]
    rr = Sorting(window=4, step=2, batch_size=3)
    out = rr.rerank_batch(rs)
    assert rs == frozen
    assert values(out[0])[:2] == [11, 10]
    assert values(out[1]) == sorted(values(rs[1]), reverse=True)
    assert values(out[2]) == values(rs[2])  # one candidate: no prompt
    windows = [r.provenance["windows"] for r in out]
    assert windows == [str(len(rr.plan(12))), str(len(rr.plan(3))), "0"]  # per query


def test_instruction_goes_into_the_listwise_prompt() -> None:
    rr = Sorting()
    rr.load()
    p = rr.prompt(Query(text="q?", instruction="Prefer reviews."), ["a {{x}} b", "c"])
    assert "Instruction: Prefer reviews." in p and "[1] a {{x}} b" in p and "[2] c" in p


# -- the real SmolLM2-135M ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def pointwise() -> LLMPointwiseReranker:
    torch.set_num_threads(2)
    return LLMPointwiseReranker(backend="transformers", batch_size=3, max_passage_tokens=48).load()


def test_pointwise_label_tokens_cover_space_variants(pointwise) -> None:
    tok = pointwise.lm.tokenizer
    yes, no = pointwise._groups
    assert {tok.decode([i]).strip() for i in yes} <= {"Yes", "yes", "YES"}
    assert any(tok.decode([i]).startswith(" ") for i in yes)
    assert any(not tok.decode([i]).startswith(" ") for i in no)


def test_pointwise_batched_equals_one_by_one(pointwise) -> None:
    r = ranking(5, query="what value is in the passage")
    docs = [h.document for h in r.hits]
    batched = np.array(pointwise._score(r.query, docs))
    single = np.array([pointwise._score(r.query, [d])[0] for d in docs])
    np.testing.assert_allclose(batched, single, atol=2e-4)
    assert ((batched > 0) & (batched < 1)).all()
    out = pointwise.rerank(r, k=3)
    assert len(out) == 3 and out.stage.startswith("llm_pointwise:smollm2-135m@transformers-")
    assert out.provenance["prompt"].startswith("rerank_pointwise@")


def test_pointwise_prompt_carries_the_instruction(pointwise) -> None:
    q = Query(text="q", instruction="Only peer-reviewed studies count.")
    (p,) = pointwise.prompts(q, [Document(id="a", text="word " * 500)])
    assert "Instruction: Only peer-reviewed studies count." in p
    assert len(pointwise.lm.tokenizer(p)["input_ids"]) < 120  # passage cut to 48 tokens


def test_graded_pointwise_is_an_expected_grade() -> None:
    rr = LLMPointwiseReranker(backend="transformers", graded=True, max_passage_tokens=32)
    scores = rr._score(Query(text="value"), [h.document for h in ranking(3).hits])
    assert all(0.0 <= s <= 3.0 for s in scores)


@pytest.mark.parametrize("constrained", [False, True], ids=["free", "constrained"])
def test_real_listwise_returns_a_permutation(constrained: bool) -> None:
    torch.set_num_threads(2)
    rr = LLMListwiseReranker(
        backend="transformers", window=3, step=2, max_passage_tokens=16, constrained=constrained
    )
    r = ranking(4)
    out = rr.rerank(r)
    assert sorted(out.ids) == sorted(r.ids) and out.scores == [4.0, 3.0, 2.0, 1.0]
    prov = out.provenance
    assert prov["backend"] == "transformers" and prov["windows"] == "2"
    assert out.stage == f"llm_listwise:smollm2-135m@transformers-{prov['backend_version']}"
    if constrained:
        assert all(set(t) <= set(ANSWER_CHARS) for t in prov["outputs"])


@pytest.mark.gpu
def test_pointwise_on_vllm_matches_transformers() -> None:
    pytest.importorskip("vllm")
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    r = ranking(4, query="what value is in the passage")
    docs = [h.document for h in r.hits]
    ours = LLMPointwiseReranker(backend="transformers", device="cuda")._score(r.query, docs)
    vllm = LLMPointwiseReranker(backend="vllm")._score(r.query, docs)
    np.testing.assert_allclose(vllm, ours, atol=0.05)
