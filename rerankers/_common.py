"""Helpers shared by the rerankers: thresholds, rank-derived rankings, provenance."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rag.errors import ConfigError
from rag.types import Document, Hit, Query, Ranking


def instruction_line(query: Query) -> str:
    """``"Instruction: ...\\n"`` for a query that carries one, else the empty string."""
    return f"Instruction: {query.instruction.strip()}\n" if query.instruction else ""


def doc_text(doc: Document) -> str:
    return doc.full_text


def check_threshold(threshold: float | None) -> float | None:
    if threshold is None:
        return None
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)):
        raise ConfigError(f"threshold must be a number or None, got {threshold!r}")
    return threshold


def drop_below(ranking: Ranking, threshold: float | None) -> Ranking:
    """Keep the hits whose score is ``>= threshold`` (all of them when ``threshold`` is None)."""
    if threshold is None:
        return ranking
    kept = tuple(h for h in ranking.hits if h.score >= threshold)
    return ranking.model_copy(update={"hits": kept})


def from_order(
    query: Query, docs: Sequence[Document], order: Sequence[int], k: int | None, stage: str
) -> Ranking:
    """A ranking that follows ``order`` (indices into ``docs``, best first) with rank-derived
    scores ``n - position`` (so the best of n documents scores n, the last 1)."""
    n = len(order)
    hits = tuple(Hit(document=docs[i], score=float(n - pos)) for pos, i in enumerate(order))
    return Ranking(query=query, hits=hits[:k] if k is not None else hits, stage=stage)


def unique_documents(ranking: Ranking) -> list[Document]:
    """The ranking's documents in order, the first occurrence of a repeated id kept."""
    seen: dict[str, Document] = {}
    for h in ranking.hits:
        seen.setdefault(h.document.id, h.document)
    return list(seen.values())


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


def stage_label(name: str, prov: dict[str, str]) -> str:
    """``llm_listwise:smollm2-135m@transformers-5.23.0`` for ``Ranking.stage``."""
    return f"{name}:{prov['model']}@{prov['backend']}-{prov['backend_version']}"


def template_tag(name: str) -> str:
    """``rerank_listwise@<sha256[:12]>``: the prompt template and its version."""
    import prompts

    return f"{name}@{prompts.version(name)}"
