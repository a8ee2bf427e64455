"""Your own files in: loaders, token- and heading-aware chunking, contextual chunks,
parent-aware retrieval, incremental re-indexing and span citations (docs/ingestion.md)."""

from rag.pipeline.context import ChunkContext
from rag.ingest.contextual import Situator
from rag.ingest.loaders import CsvColumns, LoadResult, SkipFile, Skipped, load_file, load_paths
from rag.ingest.splitter import Chunker, find_encoder, sections

__all__ = [
    "ChunkContext",
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
