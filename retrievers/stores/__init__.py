"""Vector stores: exact numpy search (optionally quantized), Qdrant in-process (qdrant-edge) and
Qdrant through qdrant-client (embedded, server or cluster)."""

from retrievers.stores.base import VectorStore
from retrievers.stores.exact import ExactStore
from retrievers.stores.filters import matches
from retrievers.stores.qdrant import QdrantStore
from retrievers.stores.qdrant_edge import QdrantEdgeStore

__all__ = ["ExactStore", "QdrantEdgeStore", "QdrantStore", "VectorStore", "matches"]
