"""Multi-vector (late interaction) retrieval: token encoder, MUVERA, stores, nodes. The one exact
MaxSim is :mod:`retrievers.kernels.maxsim` (re-exported here)."""

from retrievers.kernels.maxsim import maxsim_lists, offsets_of
from retrievers.multivector.encoder import TokenEncoder
from retrievers.multivector.muvera import MuveraFDE
from retrievers.multivector.qdrant_store import QdrantMultiVectorStore
from retrievers.multivector.retriever import MultiVectorRetriever
from retrievers.multivector.token_store import TokenStore

__all__ = [
    "MultiVectorRetriever",
    "MuveraFDE",
    "QdrantMultiVectorStore",
    "TokenEncoder",
    "TokenStore",
    "maxsim_lists",
    "offsets_of",
]
