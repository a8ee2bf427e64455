"""Citation markers: parse ``[n]`` / ``[n, m]`` / ``[n-m]`` from generated text, resolve them
against the contexts actually given, and (optionally, labelled as such) attribute uncited
sentences to sources after the fact.

>>> parse_markers("Paris [1]. It is big [2, 3].")
[1, 2, 3]
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from rag.types import Citation, Hit

_BRACKET = re.compile(r"\[([0-9][0-9,;\s\-–]*)\]")
_WORD = re.compile(r"\w+")
_SENT = re.compile(r"(?<=[.!?])\s+")


def parse_markers(text: str) -> list[int]:
    """Marker numbers in order of first appearance (``[2-4]`` expands, at most 50 wide)."""
    out: list[int] = []
    for m in _BRACKET.finditer(text):
        for part in re.split(r"[,;\s]+", m.group(1).strip()):
            rng = re.fullmatch(r"(\d+)\s*[-–]\s*(\d+)", part)
            if rng:
                a, b = int(rng.group(1)), int(rng.group(2))
                nums = list(range(a, b + 1)) if 0 < b - a <= 50 else [a, b]
            elif part.isdigit():
                nums = [int(part)]
            else:
                continue
            out.extend(n for n in nums if n not in out)
    return out


def resolve(text: str, contexts: Sequence[Hit]) -> tuple[list[Citation], list[int]]:
    """Map markers to the contexts (1-based); return (citations, invalid marker numbers)."""
    cites, bad = [], []
    for n in parse_markers(text):
        if 1 <= n <= len(contexts):
            doc = contexts[n - 1].document
            cites.append(Citation(marker=n, document_id=doc.id, title=doc.title))
        else:
            bad.append(n)
    return cites, bad


def _tokens(s: str) -> set[str]:
    return {w.lower() for w in _WORD.findall(s) if len(w) > 2}


def attribute(text: str, contexts: Sequence[Hit], min_overlap: float = 0.5) -> list[Citation]:
    """Post-hoc attribution for answers without markers: each sentence is attributed to the
    context containing the largest share of its content words, if that share >= ``min_overlap``.
    Citations made this way carry ``source="attributed"``, never ``"generated"``."""
    cites: dict[int, Citation] = {}
    ctx_tokens = [_tokens(h.document.full_text) for h in contexts]
    for sent in _SENT.split(text):
        st = _tokens(sent)
        if not st or not ctx_tokens:
            continue
        shares = [len(st & ct) / len(st) for ct in ctx_tokens]
        best = max(range(len(shares)), key=lambda i: (shares[i], -i))
        if shares[best] >= min_overlap and best + 1 not in cites:
            doc = contexts[best].document
            cites[best + 1] = Citation(
                marker=best + 1, document_id=doc.id, title=doc.title, source="attributed"
            )
    return list(cites.values())
