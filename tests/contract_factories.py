"""Factories of the multi-vector nodes for the shared contract suite (tests/test_contract.py).
The rerankers of ``rerankers/`` are covered by tests/test_rerankers_contract.py's FACTORIES."""

from __future__ import annotations


def _mv(**kw):
    from retrievers.multivector import MultiVectorRetriever

    return lambda: MultiVectorRetriever(**kw)


def _qdrant_mv():
    from retrievers.multivector import MultiVectorRetriever, QdrantMultiVectorStore

    return MultiVectorRetriever(backend="qdrant", qdrant=QdrantMultiVectorStore(collection="c"))


def _late():
    from retrievers.multivector import LateInteractionReranker

    return LateInteractionReranker()


def _think():
    from rag.generators import TransformersGenerator
    from retrievers import BM25Retriever
    from retrievers.think import ThinkRetriever

    return ThinkRetriever(BM25Retriever(), TransformersGenerator(max_new_tokens=24))


def _anncur():
    from retrievers.anncur import AnnCurRetriever

    return AnnCurRetriever(n_anchor_queries=30, n_anchor_items=8, budget=16)


EXTRA_RETRIEVERS = {
    "anncur": _anncur,
    "multivector-exact": _mv(backend="exact"),
    "multivector-muvera": _mv(backend="muvera", candidates=1000),
    "multivector-qdrant": _qdrant_mv,
    "think": _think,
}
EXTRA_RERANKERS = {"late_interaction": _late}
