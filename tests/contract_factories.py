"""Factories of the multi-vector nodes for the shared contract suite (tests/nodes/test_contract.py).
The rerankers of ``rerankers/`` are covered by tests/nodes/test_rerankers_contract.py's
FACTORIES."""

from __future__ import annotations


def _mv(**kw):
    from retrievers.multivector import MultiVectorRetriever

    return lambda: MultiVectorRetriever(**kw)


def _qdrant_mv():
    from retrievers.multivector import MultiVectorRetriever, QdrantMultiVectorStore

    return MultiVectorRetriever(backend="qdrant", qdrant=QdrantMultiVectorStore(collection="c"))


def _qdrant_hybrid():
    from retrievers import QdrantHybridRetriever

    return QdrantHybridRetriever(collection="contract_hybrid")


def _late():
    from rerankers import LateInteractionReranker

    return LateInteractionReranker()


def _think():
    from rag.generators import TransformersGenerator
    from retrievers import BM25Retriever
    from retrievers.think import ThinkRetriever

    return ThinkRetriever(BM25Retriever(), TransformersGenerator(max_new_tokens=24))


def tiny_bert(path, head: str = "BertForMaskedLM", **config) -> str:
    """A 2-layer BERT (random weights, seed 0) with MiniLM's tokenizer, saved at ``path``: no
    cross-encoder, ColBERT or SPLADE weights exist offline, so those paths are proven on this
    (``head``: a transformers BERT class; ``config``: more BertConfig fields)."""
    import torch
    import transformers

    from rag.core.models import resolve_model

    torch.manual_seed(0)
    tok = transformers.AutoTokenizer.from_pretrained(resolve_model("minilm"))
    cfg = transformers.BertConfig(
        vocab_size=tok.vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=512,
        **config,
    )
    getattr(transformers, head)(cfg).eval().save_pretrained(path)
    tok.save_pretrained(path)
    return str(path)


def tiny_mlm_checkpoint(path=None) -> str:
    """The SPLADE test checkpoint: a tiny masked-LM BERT (once per path)."""
    import functools
    import tempfile

    @functools.cache
    def build(target: str) -> str:
        # small weights keep scores O(1) like a trained SPLADE's (random ones reach ~800,
        # where float32 batching noise exceeds the contract's 1e-4 tolerance)
        return tiny_bert(target, "BertForMaskedLM", initializer_range=0.002)

    return build(str(path) if path else _SPLADE_DIR.setdefault("p", tempfile.mkdtemp()))


_SPLADE_DIR: dict[str, str] = {}


def _splade():
    from retrievers.splade import SpladeRetriever

    return SpladeRetriever(model=tiny_mlm_checkpoint(), max_length=64)


def _anncur():
    from retrievers.anncur import AnnCurRetriever

    return AnnCurRetriever(n_anchor_queries=30, n_anchor_items=8, budget=16)


def _rm3():
    from retrievers import RM3Retriever

    return RM3Retriever(fb_docs=1, fb_terms=5, original_query_weight=0.8)


def _dense_prf():
    from retrievers import DensePRFRetriever

    return DensePRFRetriever(fb_docs=2)


def _rerank_fusion():
    from rerankers import LateInteractionReranker
    from retrievers import BM25Retriever, DenseRetriever, RerankFusionRetriever

    return RerankFusionRetriever(
        [BM25Retriever(), DenseRetriever()], [LateInteractionReranker()], depth=10
    )


def _rerank_fusion_shared():
    from retrievers import (
        BM25Retriever,
        DensePRFRetriever,
        DenseRetriever,
        RerankFusionRetriever,
        RM3Retriever,
    )

    rm3 = RM3Retriever(fb_docs=1, fb_terms=5, original_query_weight=0.8)
    return RerankFusionRetriever(
        [rm3, BM25Retriever(), DensePRFRetriever(fb_docs=2), DenseRetriever()],
        method="score",
        weights=[0.5, 1.0, 0.5, 1.0],
    )


def _parents():
    from retrievers import BM25Retriever, DenseRetriever, HybridRetriever, ParentRetriever

    return ParentRetriever(HybridRetriever([BM25Retriever(), DenseRetriever()]), how="max")


def _combmnz():
    from composite_example import CombMNZRetriever

    from retrievers import BM25Retriever, DenseRetriever

    return CombMNZRetriever([BM25Retriever(), DenseRetriever()])


EXTRA_RETRIEVERS = {
    "combmnz-example": _combmnz,
    "anncur": _anncur,
    "splade": _splade,
    "bm25_rm3": _rm3,
    "dense_prf": _dense_prf,
    "rerank_fusion": _rerank_fusion,
    "rerank_fusion-shared": _rerank_fusion_shared,
    "multivector-exact": _mv(backend="exact"),
    "multivector-muvera": _mv(backend="muvera", candidates=1000),
    "multivector-qdrant": _qdrant_mv,
    "qdrant-hybrid": _qdrant_hybrid,
    "think": _think,
    "parents": _parents,
}
EXTRA_RERANKERS = {"late_interaction": _late}
# node names whose factory builds a model with random weights: the contract holds, relevance
# (e.g. "jupiter" in the top 3 for "Which planet is the largest?") cannot be asked of them
UNTRAINED = {"splade"}
