"""Counting tokens of a prompt: with the generator's own tokenizer when it has one, else about
four characters a token. Core, so that tracing (``rag.core.tracing``), the server's prompt limits
and chat's history budget (``rag.app.chat``) count alike."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

TokenCounter = Callable[[str], int]


def approx_tokens(text: str) -> int:
    """About four characters per token for English BPE vocabularies (used without a tokenizer)."""
    return math.ceil(len(text) / 4)


def token_counter(generator: Any) -> TokenCounter:
    """Count with the generator's tokenizer when it has one, else :func:`approx_tokens`."""
    if hasattr(generator, "load"):
        generator.load()
    tok = getattr(generator, "tokenizer", None)
    if tok is None or not hasattr(tok, "encode"):
        return approx_tokens
    return lambda s: len(tok.encode(s, add_special_tokens=False))
