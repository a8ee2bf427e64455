"""The SmolLM2 label-probability judge on the real embedded model (``slow``: loading it under
CPU contention takes most of a minute), and the lexical judge."""

from __future__ import annotations

import numpy as np
import pytest

from rag.pipeline.judges import STANCE, YES_NO, LexicalJudge, LLMJudge, first_token_ids


@pytest.fixture(scope="module")
def judge():
    import torch

    torch.set_num_threads(2)
    return LLMJudge("smollm2-135m", device="cpu", max_context_tokens=64).load()


@pytest.mark.slow
def test_label_tokens_are_distinct_first_tokens(judge):
    tok = judge._lm.tokenizer
    yes, no = (first_token_ids(tok, s) for s in YES_NO.values())
    sup, con = (first_token_ids(tok, s) for s in STANCE.values())
    assert yes and no and not set(yes) & set(no)
    assert sup and con and not set(sup) & set(con)


@pytest.mark.slow
def test_judge_probabilities_are_normalised_and_batched_consistently(judge):
    ctx = ["Aspirin irreversibly inhibits platelet cyclooxygenase.", "Bananas are yellow."]
    st = ["Aspirin inhibits cyclooxygenase.", "Aspirin inhibits cyclooxygenase."]
    p = judge.p_support(ctx, st)
    assert p.shape == (2,) and np.all((p > 0) & (p < 1))
    alone = judge.p_support(ctx[:1], st[:1])
    assert alone[0] == pytest.approx(p[0], abs=1e-4)  # left padding does not change the score
    probs = judge.label_probs("judge_stance", STANCE, [{"claim": st[0], "evidence": ctx[0]}])
    assert probs.sum() == pytest.approx(1.0)
    assert set(judge.provenance()) >= {"judge_faithfulness", "judge_stance", "model"}


def test_lexical_judge_coverage():
    j = LexicalJudge()
    assert j.p_support(["statins lower LDL"], ["statins raise LDL"])[0] == pytest.approx(2 / 3)
    assert j.p_relevant(["what lowers LDL?"], ["statins lower LDL"])[0] == 0.5
