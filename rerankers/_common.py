"""Helpers of the LLM rerankers inside this package: passage text and prompt tags (an LLM's
provenance is its runtime's ``provenance``, :mod:`rag.core.llm`).

The generic reranking steps (thresholds, de-duplication, rank-derived scores, the stage label)
belong to :class:`rag.core.nodes.BaseReranker`; the instruction line is
:func:`prompts.instructions.instruction_line`, re-exported here for the rerankers' imports.
"""

from __future__ import annotations

from prompts.instructions import instruction_line
from rag.core.types import Document

__all__ = ["doc_text", "instruction_line", "template_tag"]


def doc_text(doc: Document) -> str:
    return doc.full_text


def template_tag(name: str) -> str:
    """``rerank_listwise@<sha256[:12]>``: the prompt template and its version."""
    import prompts

    return f"{name}@{prompts.version(name)}"
