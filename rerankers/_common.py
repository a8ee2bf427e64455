"""Helpers of the LLM rerankers inside this package: passage text, prompt tags, provenance.

The generic reranking steps (thresholds, de-duplication, rank-derived scores, the stage label)
belong to :class:`rag.nodes.BaseReranker`; the instruction line is
:func:`prompts.instructions.instruction_line`, re-exported here for the rerankers' imports.
"""

from __future__ import annotations

from typing import Any

from prompts.instructions import instruction_line
from rag.types import Document

__all__ = ["doc_text", "instruction_line", "provenance", "template_tag"]


def doc_text(doc: Document) -> str:
    return doc.full_text


def provenance(backend: str, model: str, lm: Any = None) -> dict[str, str]:
    """What produced a ranking: backend and its version, model id and, when known, its revision."""
    import importlib.metadata as md

    def version(dist: str) -> str:
        try:
            return md.version(dist)
        except md.PackageNotFoundError:
            return "unknown"

    rec = {"backend": backend, "backend_version": version(backend), "model": model}
    if backend == "transformers":
        rec["torch_version"] = version("torch")
    config = getattr(lm, "config", None)
    for key in ("_name_or_path", "_commit_hash"):
        value = getattr(config, key, None)
        if value:
            rec[key.strip("_")] = str(value)
    return rec


def template_tag(name: str) -> str:
    """``rerank_listwise@<sha256[:12]>``: the prompt template and its version."""
    import prompts

    return f"{name}@{prompts.version(name)}"
