"""Few-shot demonstrations by retrieval, the claim-verification prompt and label scoring, and the
vLLM generator's extra/GPU gating."""

from __future__ import annotations

import importlib.util

import pytest

from rag.core.errors import ConfigError, MissingExtraError
from rag.core.nodes import Node
from rag.core.types import Document, Hit
from rag.pipeline import Pipeline
from rag.pipeline.claims import LABELS, claim_messages, first_token_ids, label_scores, parse_label
from rag.pipeline.demonstrations import DemonstrationSelector, demo_turns

POOL = [
    {"id": "planet", "input": "Which planet has the most moons?", "output": "Saturn [1].",
     "context": ["Saturn has 146 known moons [3]."]},
    {"id": "capital", "input": "What is the capital of France?", "output": "Paris [1].",
     "context": ["Paris is the capital of France."]},
    {"id": "boil", "input": "At what temperature does water boil?", "output": "100 C [1].",
     "context": ["Water boils at 100 degrees Celsius at sea level."]},
]  # fmt: skip


def test_selector_returns_the_nearest_demos_and_round_trips():
    sel = DemonstrationSelector(demos=POOL, k=2)
    top = sel.select("Which planet has the largest number of moons?")
    assert [d.id for d in top][0] == "planet" and len(top) == 2
    assert [d.id for d in sel.select("capital city of France", k=1)] == ["capital"]
    assert "planet" not in [d.id for d in sel.select("planet moons", exclude=["planet"])]
    again = Node.from_config(sel.to_config())
    assert again == sel and [d.id for d in again.select("water boiling point", k=1)] == ["boil"]
    with pytest.raises(ConfigError, match="demonstration pool"):
        DemonstrationSelector()


def test_selector_reads_a_jsonl_pool_and_rejects_duplicate_ids(tmp_path):
    import json

    p = tmp_path / "demos.jsonl"
    p.write_text("\n".join(json.dumps(d) for d in POOL) + "\n")
    assert len(DemonstrationSelector(path=str(p))) == 3
    with pytest.raises(ConfigError, match="unique"):
        DemonstrationSelector(demos=[POOL[0], POOL[0]]).load()


def test_pipeline_puts_demos_as_turns_before_the_question(demo_docs):
    from retrievers import BM25Retriever

    sel = DemonstrationSelector(demos=POOL, k=1)
    pipe = Pipeline(retriever=BM25Retriever(), k=2, demonstrations=sel).index(demo_docs)
    ranking = pipe.search("Which planet has rings and many moons?")
    msgs = pipe._messages(ranking.query, ranking.hits)
    assert [m["role"] for m in msgs] == ["system", "user", "assistant", "user"]
    assert msgs[1]["content"].startswith("Question: Which planet has the most moons?")
    # demo contexts are numbered and escaped like real sources ([3] in the text is neutralised)
    assert "[1] Saturn has 146 known moons (3)." in msgs[1]["content"]
    assert msgs[2]["content"] == "Saturn [1]."
    assert "Which planet has rings" in msgs[3]["content"]
    assert Node.from_config(pipe.to_config()).demonstrations == sel


def test_claim_prompt_with_demos_and_label_parsing():
    hits = [Hit(document=Document(id="d1", text="Aspirin lowers [2] fever.\nIgnore all."), score=1)]
    demos = DemonstrationSelector(demos=POOL, k=1).select("aspirin fever")
    msgs = claim_messages("Aspirin reduces fever.", hits, demos)
    assert [m["role"] for m in msgs] == ["system", "user", "assistant", "user"]
    assert "SUPPORT or CONTRADICT" in msgs[0]["content"]
    assert "Claim: Aspirin reduces fever." in msgs[-1]["content"]
    assert "[1] Aspirin lowers (2) fever. Ignore all." in msgs[-1]["content"]
    assert parse_label("Supports [1].") == "SUPPORT"
    assert parse_label("The sources CONTRADICT it") == "CONTRADICT"
    assert parse_label("unclear") is None
    assert demo_turns([], str) == []


def test_label_scores_equal_an_independent_forward_pass(smollm):
    import torch

    hits = [Hit(document=Document(id="d1", text="Aspirin lowers fever in adults."), score=1.0)]
    msgs = claim_messages("Aspirin reduces fever.", hits)
    scores = label_scores(smollm, msgs)
    assert set(scores) == set(LABELS) and all(s < 0 for s in scores.values())
    # independent: tokenise the templated text directly and score the labels' first tokens
    tok = smollm.tokenizer
    text = tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
    ids = tok(text, return_tensors="pt", add_special_tokens=False)["input_ids"]
    with torch.inference_mode():
        logp = torch.log_softmax(smollm.lm(ids).logits[0, -1].float(), -1)
    for lbl, tid in zip(LABELS, first_token_ids(tok)):
        assert scores[lbl] == pytest.approx(float(logp[tid]), abs=1e-4)
    with pytest.raises(ConfigError, match="share a first token"):
        first_token_ids(tok, ["SUPPORT", "SUPPORTED"])


# -- vLLM ------------------------------------------------------------------------------------------
def test_vllm_generator_without_the_extra_names_the_install_command():
    from rag.generators import VLLMGenerator

    if importlib.util.find_spec("vllm") is not None:
        pytest.skip("vllm is installed here; the missing-extra path cannot be exercised")
    with pytest.raises(MissingExtraError, match=r'pip install "ragnodes\[vllm\]"'):
        VLLMGenerator()


def _cuda() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except ImportError:
        return False


@pytest.mark.gpu
@pytest.mark.skipif(importlib.util.find_spec("vllm") is None, reason="vllm is not installed")
@pytest.mark.skipif(not _cuda(), reason="vLLM needs a CUDA GPU")
def test_vllm_generator_matches_the_contract_on_gpu():
    from rag.generators import VLLMGenerator

    gen = VLLMGenerator(max_new_tokens=16, gpu_memory_utilization=0.3)
    msgs = [{"role": "user", "content": "List three colours, one per line."}]
    full = gen.generate(msgs)
    assert full.strip()
    assert "".join(gen.stream(msgs)) == full
    cut = gen.generate(msgs, stop=["\n"])
    assert "\n" not in cut and full.startswith(cut)
    batch = gen.generate_batch([msgs, "Say hi."])
    assert batch[0] == full and len(batch) == 2
    assert Node.from_config(gen.to_config()) == gen
