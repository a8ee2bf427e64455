"""The packaged demo corpus and the three named retrievers of ``rag index --retriever`` /
``rag chat``: shared by the command-line modules (:mod:`rag.app.cli`, :mod:`rag.app.chat_cli`)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

from rag.core.errors import ConfigError

RETRIEVERS = ("bm25", "dense", "hybrid")


def demo_corpus_path() -> Path:
    return Path(str(resources.files("rag") / "data" / "demo_corpus.jsonl"))


def build_retriever(kind: str, qdrant_path: str | None = None, progress: bool = True) -> Any:
    from retrievers import BM25Retriever, DenseRetriever, HybridRetriever, QdrantStore

    def dense() -> DenseRetriever:
        store = QdrantStore(path=qdrant_path) if qdrant_path else None
        return DenseRetriever(store=store, show_progress=progress)

    if kind == "bm25":
        return BM25Retriever()
    if kind == "dense":
        return dense()
    if kind == "hybrid":
        return HybridRetriever([BM25Retriever(), dense()])
    raise ConfigError(f"--retriever must be one of {RETRIEVERS}, got {kind!r}")
