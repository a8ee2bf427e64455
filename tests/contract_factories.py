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


def _rm3():
    from retrievers import RM3Retriever

    return RM3Retriever(fb_docs=1, fb_terms=5, original_query_weight=0.8)


def _dense_prf():
    from retrievers import DensePRFRetriever

    return DensePRFRetriever(fb_docs=2)


def _rerank_fusion():
    from retrievers import (
        BM25Retriever,
        DenseRetriever,
        LateInteractionReranker,
        RerankFusionRetriever,
    )

    return RerankFusionRetriever(
        [BM25Retriever(), DenseRetriever()], [LateInteractionReranker()], depth=10
    )


def _rerank_fusion_shared():
    from retrievers import (
        BM25Retriever,
        DensePRFRetriever,
        DenseRetriever,
        RerankFusionRetriever,
        RM3Retriever,
    )

    rm3 = RM3Retriever(fb_docs=1, fb_terms=5, original_query_weight=0.8)
    return RerankFusionRetriever(
        [rm3, BM25Retriever(), DensePRFRetriever(fb_docs=2), DenseRetriever()],
        method="score",
        weights=[0.5, 1.0, 0.5, 1.0],
    )


EXTRA_RETRIEVERS = {
    "bm25_rm3": _rm3,
    "dense_prf": _dense_prf,
    "rerank_fusion": _rerank_fusion,
    "rerank_fusion-shared": _rerank_fusion_shared,
    "multivector-exact": _mv(backend="exact"),
    "multivector-muvera": _mv(backend="muvera", candidates=1000),
    "multivector-qdrant": _qdrant_mv,
    "think": _think,
}
EXTRA_RERANKERS = {"late_interaction": _late}
