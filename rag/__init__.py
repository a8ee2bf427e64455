"""ragnodes core: value types, the node contract, the pipeline, model resolution, generation."""

from rag.core.errors import (
    ConfigError,
    DataError,
    MissingExtraError,
    ModelNotFoundError,
    NotIndexedError,
    RagError,
)
from rag.core.nodes import (
    BaseReranker,
    BaseRetriever,
    Compressor,
    Generator,
    Node,
    Reranker,
    Retriever,
)
from rag.core.types import Answer, Citation, Document, Hit, Query, Ranking

__all__ = [
    "Answer",
    "BaseReranker",
    "BaseRetriever",
    "Citation",
    "Compressor",
    "ConfigError",
    "DataError",
    "Document",
    "Generator",
    "Hit",
    "MissingExtraError",
    "ModelNotFoundError",
    "Node",
    "NotIndexedError",
    "Query",
    "RagError",
    "Ranking",
    "Reranker",
    "Retriever",
]
