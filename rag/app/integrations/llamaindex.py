"""ragnodes inside LlamaIndex: retrievers, rerankers/compressors and nodes in both directions.

* :class:`LlamaIndexRetriever` -- any ragnodes retriever or :class:`~rag.pipeline.Pipeline` as a
  ``llama_index.core`` ``BaseRetriever``: ``QueryBundle`` in, ``NodeWithScore`` out, the node id
  is the document id and ``metadata`` keeps the document's metadata and title; a document indexed
  from a chunk keeps its source document as ``node.ref_doc_id`` (the ``SOURCE`` relationship).
  ``filters`` may be LlamaIndex ``MetadataFilters`` (translated by
  :mod:`rag.app.integrations.filters`) or ragnodes' filter dict.
* :class:`~rag.app.integrations.llamaindex_models.RagEmbedding` /
  :class:`~rag.app.integrations.llamaindex_models.RagLLM` -- ragnodes' encoders and generators as
  LlamaIndex ``BaseEmbedding`` and ``LLM`` (re-exported here).
* :class:`LlamaIndexPostprocessor` -- any ragnodes reranker or compressor as a
  ``BaseNodePostprocessor`` (``node_postprocessors=[...]`` of a query engine).
* :func:`from_nodes` / :func:`index_llama_nodes` / :func:`index_llama_documents` -- LlamaIndex
  nodes (or reader Documents chunked by a node parser such as ``SentenceSplitter``) into a
  ragnodes index; node ids and metadata are preserved, ``ref_doc_id`` kept as metadata.

>>> from llama_index.core.query_engine import RetrieverQueryEngine
>>> retriever = LlamaIndexRetriever(bm25, k=3)
>>> engine = RetrieverQueryEngine.from_args(retriever, llm=llm)        # doctest: +SKIP

Needs the ``llamaindex`` extra (``pip install "ragnodes[llamaindex]"``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import Field

from rag.app.integrations.filters import from_llamaindex
from rag.core.errors import ConfigError
from rag.core.extras import require
from rag.core.filters import parse_filter
from rag.core.nodes import check_k
from rag.core.types import Document, Query, Ranking
from rag.ingest.frameworks import (
    asearch,
    check_postprocessor,
    check_searchable,
    out_metadata,
    postprocess,
    ranking_in_order,
    search,
    split_metadata,
)

try:
    from llama_index.core.postprocessor.types import BaseNodePostprocessor
    from llama_index.core.retrievers import BaseRetriever
    from llama_index.core.schema import (
        BaseNode,
        MetadataMode,
        NodeRelationship,
        NodeWithScore,
        QueryBundle,
        RelatedNodeInfo,
        TextNode,
    )
except ImportError:
    require("llama_index.core", extra="llamaindex", feature="the LlamaIndex adapters")
    raise

REF_DOC_KEY = "ref_doc_id"
PARENT_KEY = "parent_id"


def to_node(doc: Document) -> TextNode:
    """A ``TextNode`` of a document: node id = document id; a ``ref_doc_id`` in the metadata,
    else a chunk's ``parent_id`` (the file it was cut from), becomes the ``SOURCE``
    relationship, so ``node.ref_doc_id`` works as for LlamaIndex's own nodes. The metadata holds
    the citation fields too (``path``, ``span``, ``page``, ``heading``)."""
    relationships = {}
    # a chunk of an ingested file: its file's document id (rag.ingest.splitter's parent_id)
    ref = doc.metadata.get(REF_DOC_KEY) or doc.metadata.get(PARENT_KEY)
    if isinstance(ref, str) and ref:
        relationships[NodeRelationship.SOURCE] = RelatedNodeInfo(node_id=ref)
    return TextNode(
        id_=doc.id, text=doc.text, metadata=out_metadata(doc), relationships=relationships
    )


def to_nodes(ranking: Ranking) -> list[NodeWithScore]:
    """``NodeWithScore`` s of a ranking, best first; node id = document id."""
    return [NodeWithScore(node=to_node(h.document), score=h.score) for h in ranking.hits]


def from_node(node: BaseNode) -> Document:
    """A ragnodes Document from a LlamaIndex node: its id, text (without metadata), metadata."""
    title, meta = split_metadata(node.metadata)
    if node.ref_doc_id and node.ref_doc_id != node.node_id:
        meta.setdefault(REF_DOC_KEY, node.ref_doc_id)
    text = node.get_content(metadata_mode=MetadataMode.NONE)
    return Document(id=node.node_id, text=text, title=title, metadata=meta)


def from_nodes(nodes: Sequence[BaseNode | NodeWithScore]) -> list[Document]:
    return [from_node(n.node if isinstance(n, NodeWithScore) else n) for n in nodes]


def index_llama_nodes(target: Any, nodes: Sequence[BaseNode | NodeWithScore]) -> Any:
    """Index LlamaIndex nodes into a ragnodes retriever or pipeline; returns ``target``."""
    return target.index(from_nodes(nodes))


def index_llama_documents(target: Any, documents: Sequence[Any], node_parser: Any = None) -> Any:
    """Chunk LlamaIndex reader ``Document`` s with ``node_parser`` (default: a
    ``SentenceSplitter`` of 512 tokens) and index the chunks; returns ``target``."""
    if node_parser is None:
        from llama_index.core.node_parser import SentenceSplitter

        node_parser = SentenceSplitter(chunk_size=512, chunk_overlap=32)
    return index_llama_nodes(target, node_parser.get_nodes_from_documents(list(documents)))


class LlamaIndexRetriever(BaseRetriever):
    """A ragnodes retriever or pipeline behind LlamaIndex's retriever interface.

    Args:
        retriever: an indexed ragnodes retriever, or a Pipeline (rerankers/compressors apply).
        k: nodes returned per query.
        filter: metadata filter: LlamaIndex ``MetadataFilters`` or a dict in ragnodes' filter
            language (:mod:`rag.core.filters`); through a pipeline it applies before rerankers.
        filters: the same, under LlamaIndex's own argument name.
    """

    def __init__(
        self,
        retriever: Any,
        k: int = 10,
        filter: Any = None,
        filters: Any = None,
        **kwargs: Any,
    ) -> None:
        self.retriever = check_searchable(retriever)
        self.k = check_k(k)
        if filter is not None and filters is not None:
            raise ConfigError("pass filter= or filters=, not both")
        flt = filters if filters is not None else filter
        # parsed now: a bad filter fails here, in one line (rag.core.filters), not at the first
        # query
        is_dict = flt is None or isinstance(flt, dict)
        self.filter = parse_filter(flt) if is_dict else from_llamaindex(flt)
        super().__init__(**kwargs)

    def _retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        # the query string, not embedding_strs: ragnodes nodes embed (or not) on their own
        query = Query(text=query_bundle.query_str)
        return to_nodes(search(self.retriever, query, self.k, self.filter))

    async def _aretrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        # off the event loop (a pipeline's worker pool), with the caller's span as parent
        query = Query(text=query_bundle.query_str)
        return to_nodes(await asearch(self.retriever, query, self.k, self.filter))


class LlamaIndexPostprocessor(BaseNodePostprocessor):
    """A ragnodes reranker or compressor as a LlamaIndex node postprocessor.

    Incoming nodes keep their order for compressors; a reranker reorders them. ``top_n`` keeps
    the best ``n``. Output nodes are new ``TextNode`` s with the same ids and metadata.
    """

    node: Any = Field(description="a ragnodes reranker or compressor", exclude=True)
    top_n: int | None = Field(None, ge=1)

    def __init__(self, **data: Any) -> None:
        check_postprocessor(data.get("node"))  # a ConfigError here, not a ValidationError
        super().__init__(**data)

    @classmethod
    def class_name(cls) -> str:
        return "RagnodesPostprocessor"

    def _postprocess_nodes(
        self, nodes: list[NodeWithScore], query_bundle: QueryBundle | None = None
    ) -> list[NodeWithScore]:
        if query_bundle is None:
            raise ConfigError("a ragnodes postprocessor needs the query: pass query_bundle=")
        if not nodes:
            return []
        scored = [(from_node(n.node), n.score if n.score is not None else 0.0) for n in nodes]
        ranking = ranking_in_order(query_bundle.query_str, scored)
        return to_nodes(postprocess(self.node, ranking, self.top_n))


from rag.app.integrations.llamaindex_models import RagEmbedding, RagLLM  # noqa: E402

__all__ = [
    "LlamaIndexPostprocessor",
    "LlamaIndexRetriever",
    "RagEmbedding",
    "RagLLM",
    "from_node",
    "from_nodes",
    "index_llama_documents",
    "index_llama_nodes",
    "to_nodes",
]
