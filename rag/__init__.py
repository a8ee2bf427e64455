"""ragnodes core: value types, the node contract, the pipeline, model resolution, generation."""

from rag.errors import (
    ConfigError,
    DataError,
    MissingExtraError,
    ModelNotFoundError,
    NotIndexedError,
    RagError,
)
from rag.index.files import publish as _publish
from rag.models import use_writer as _use_writer
from rag.nodes import BaseReranker, BaseRetriever, Compressor, Generator, Node, Reranker, Retriever
from rag.types import Answer, Citation, Document, Hit, Query, Ranking

# the package root wires the layers: core's caches (rag.models.publish) write through the index
# layer's one writer, which core never imports (rag.index renames files, nothing else does)
_use_writer(_publish)

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
