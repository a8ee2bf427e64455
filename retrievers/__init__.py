"""Retriever nodes: BM25, dense, hybrid fusion, and vector stores."""

from retrievers.bm25 import BM25Retriever
from retrievers.dense import DenseRetriever
from retrievers.fusion import rrf, score_fusion
from retrievers.hybrid import HybridRetriever
from retrievers.stores import ExactStore, QdrantStore

__all__ = [
    "BM25Retriever",
    "DenseRetriever",
    "ExactStore",
    "HybridRetriever",
    "QdrantStore",
    "rrf",
    "score_fusion",
]
