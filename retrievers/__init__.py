"""Retriever nodes: BM25, dense, hybrid fusion, multi-vector, think-before-retrieve; stores."""

from retrievers.anncur import AnnCurRetriever
from retrievers.bm25 import BM25Retriever
from retrievers.dense import DenseRetriever
from retrievers.fusion import rrf, score_fusion
from retrievers.hybrid import HybridRetriever
from retrievers.multivector import (
    MultiVectorRetriever,
    MuveraFDE,
    QdrantMultiVectorStore,
    TokenEncoder,
    TokenStore,
)
from retrievers.parents import ParentRetriever
from retrievers.prf import DensePRFRetriever, RM3Retriever
from retrievers.qdrant_hybrid import QdrantHybridRetriever
from retrievers.rerank_fusion import RerankFusionRetriever
from retrievers.sparse import BM25SparseEncoder
from retrievers.splade import SpladeRetriever
from retrievers.stores import ExactStore, QdrantStore
from retrievers.think import ThinkRetriever

__all__ = [
    "AnnCurRetriever",
    "BM25Retriever",
    "BM25SparseEncoder",
    "DensePRFRetriever",
    "DenseRetriever",
    "ExactStore",
    "HybridRetriever",
    "MultiVectorRetriever",
    "MuveraFDE",
    "ParentRetriever",
    "QdrantHybridRetriever",
    "QdrantMultiVectorStore",
    "QdrantStore",
    "RM3Retriever",
    "RerankFusionRetriever",
    "SpladeRetriever",
    "ThinkRetriever",
    "TokenEncoder",
    "TokenStore",
    "rrf",
    "score_fusion",
]
