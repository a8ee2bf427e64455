"""ragnodes: the core's public names (value types, errors, the node contract); `Pipeline` is in
:mod:`rag.pipeline`, the CLI and server in :mod:`rag.app`."""

from rag.core.errors import (
    ConfigError,
    DataError,
    MissingExtraError,
    ModelNotFoundError,
    NotIndexedError,
    RagError,
)
from rag.core.models import use_writer as _use_writer
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
from rag.index.files import publish as _publish

# the package root wires the layers: core's caches (rag.core.models.publish) write through the index
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
