"""Vector stores: exact numpy search and Qdrant (embedded, server or cluster)."""

from retrievers.stores.base import VectorStore
from retrievers.stores.exact import ExactStore
from retrievers.stores.filters import matches
from retrievers.stores.qdrant import QdrantStore

__all__ = ["ExactStore", "QdrantStore", "VectorStore", "matches"]
