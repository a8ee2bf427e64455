"""Claim verification against sources: SUPPORT vs CONTRADICT, by next-token probability or by
free generation with a citation marker (the SciFact task; Wadden et al., EMNLP 2020).

The prompt is ``prompts/templates/claim_system.txt`` + ``claim_user.txt``, sources formatted and
escaped exactly like the answer prompt's (:func:`rag.pipeline.format_sources`), with optional
few-shot turns from a :class:`~rag.pipeline.demonstrations.DemonstrationSelector`.

``label_scores`` reads the log-probabilities of each label's *first* token right after the
assistant turn opens (one forward pass; the labels' first tokens must differ), so the
prediction is the label the model would start writing; ``parse_label`` reads a label and the
citations out of a generated answer.

>>> parse_label("contradict [2] because ...")
'CONTRADICT'
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import prompts
from rag.core.errors import ConfigError
from rag.core.types import Hit
from rag.pipeline.demonstrations import Demonstration, demo_turns

LABELS = ("SUPPORT", "CONTRADICT")
_LABEL = re.compile(r"\b(SUPPORTS?|CONTRADICTS?)\b", re.I)


def claim_user_turn(claim: str, hits: Sequence[Hit], max_chars: int = 2000) -> str:
    from rag.pipeline import format_sources

    return prompts.render("claim_user", claim=claim, sources=format_sources(hits, max_chars))


def claim_messages(
    claim: str,
    hits: Sequence[Hit],
    demos: Sequence[Demonstration] = (),
    max_chars: int = 2000,
) -> list[dict[str, str]]:
    """System prompt, few-shot turns (one per demonstration), then the claim with its sources."""
    from rag.pipeline import context_hits

    shots = demo_turns(demos, lambda d: claim_user_turn(d.input, context_hits(d), max_chars))
    return [
        {"role": "system", "content": prompts.load("claim_system")},
        *shots,
        {"role": "user", "content": claim_user_turn(claim, hits, max_chars)},
    ]


def first_token_ids(tokenizer: Any, labels: Sequence[str] = LABELS) -> list[int]:
    """Id of each label's first token; labels must start with different tokens."""
    ids = [tokenizer(lbl, add_special_tokens=False)["input_ids"][0] for lbl in labels]
    if len(set(ids)) != len(ids):
        raise ConfigError(f"labels {list(labels)} share a first token; pick distinct labels")
    return ids


def label_scores(
    generator: Any, messages: list[dict[str, str]], labels: Sequence[str] = LABELS
) -> dict[str, float]:
    """Log-probability of each label's first token as the assistant's first token.

    ``generator`` is a loaded :class:`~rag.generators.TransformersGenerator` (its tokenizer, LM and
    chat template). Returns ``{label: logprob}``; the prediction is the argmax."""
    torch = generator._torch
    inputs = generator.prompt_ids(messages)
    ids = first_token_ids(generator.tokenizer, labels)
    with torch.inference_mode():
        logits = generator.lm(**inputs).logits[0, -1].float()
    logp = torch.log_softmax(logits, dim=-1)
    return {lbl: float(logp[i]) for lbl, i in zip(labels, ids)}


def parse_label(text: str) -> str | None:
    """The first SUPPORT/CONTRADICT (any case, plural accepted) in ``text``, or None."""
    m = _LABEL.search(text)
    if not m:
        return None
    return "SUPPORT" if m.group(1).upper().startswith("SUPPORT") else "CONTRADICT"
