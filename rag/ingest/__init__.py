"""Your own files in: loaders, token- and heading-aware chunking, contextual chunks, incremental
re-indexing (docs/ingestion.md). The query-time side (parent expansion, the chunk context, span
citations) is in :mod:`rag.pipeline`.

Importing this package registers every node type below the app: the chunker and the situator
here, and through :mod:`rag.pipeline` every retriever, reranker, generator and compressor (the
ingest workers build encoders and pipelines by name)."""

import rag.pipeline as _pipeline  # noqa: F401  (registers the node packages; see above)
from rag.ingest.contextual import Situator
from rag.ingest.loaders import CsvColumns, LoadResult, SkipFile, Skipped, load_file, load_paths
from rag.ingest.splitter import Chunker, find_encoder, sections

__all__ = [
    "Chunker",
    "CsvColumns",
    "LoadResult",
    "SkipFile",
    "Situator",
    "Skipped",
    "find_encoder",
    "load_file",
    "load_paths",
    "sections",
]
