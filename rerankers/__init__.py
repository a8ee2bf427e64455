"""Rerankers: one verb (``rerank`` / ``rerank_batch``) over cross-encoders, LLMs and encoders.

Every reranker returns a new :class:`rag.core.types.Ranking` (sorted, unique ids, at most ``k``) and
leaves its input untouched; see :mod:`rag.core.nodes` for the contract.
"""

from rerankers.cascade import CascadeReranker
from rerankers.cross_encoder import CrossEncoderReranker
from rerankers.embedding import EmbeddingReranker
from rerankers.late_interaction import LateInteractionReranker
from rerankers.llm_listwise import LLMListwiseReranker, windows
from rerankers.llm_pointwise import LLMPointwiseReranker
from rerankers.permutation import mentioned_ids, parse_permutation
from rerankers.relevance_filter import RelevanceFilter, set_quality

__all__ = [
    "CascadeReranker",
    "CrossEncoderReranker",
    "EmbeddingReranker",
    "LateInteractionReranker",
    "LLMListwiseReranker",
    "LLMPointwiseReranker",
    "RelevanceFilter",
    "mentioned_ids",
    "parse_permutation",
    "set_quality",
    "windows",
]
