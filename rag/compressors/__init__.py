"""Context compressors: nodes that shorten, filter or reorder a ranking before generation.

See :mod:`rag.compressors.base` for the contract and ``docs/compression.md`` for measurements.
"""

from rag.compressors.base import BaseCompressor, split_sentences
from rag.compressors.extractive import ExtractiveCompressor
from rag.compressors.redundancy import RedundancyFilter
from rag.compressors.selection import LostInTheMiddleReorder, RelevanceCutoff
from rag.compressors.token_pruning import TokenPruningCompressor
from rag.compressors.xrag import XRAGCompressor

__all__ = [
    "BaseCompressor",
    "ExtractiveCompressor",
    "LostInTheMiddleReorder",
    "RedundancyFilter",
    "RelevanceCutoff",
    "TokenPruningCompressor",
    "split_sentences",
    "XRAGCompressor",
]
