"""Multi-vector (late interaction) retrieval: token encoder, exact MaxSim, MUVERA, stores, nodes."""

from retrievers.multivector.encoder import TokenEncoder
from retrievers.multivector.maxsim import maxsim_flat, maxsim_lists, maxsim_naive, maxsim_padded
from retrievers.multivector.muvera import MuveraFDE
from retrievers.multivector.qdrant_store import QdrantMultiVectorStore
from retrievers.multivector.reranker import LateInteractionReranker
from retrievers.multivector.retriever import MultiVectorRetriever
from retrievers.multivector.token_store import TokenStore

__all__ = [
    "LateInteractionReranker",
    "MultiVectorRetriever",
    "MuveraFDE",
    "QdrantMultiVectorStore",
    "TokenEncoder",
    "TokenStore",
    "maxsim_flat",
    "maxsim_lists",
    "maxsim_naive",
    "maxsim_padded",
]
