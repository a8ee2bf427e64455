"""ragnodes inside LangChain: retrievers, rerankers/compressors and Documents in both directions.

* :class:`LangChainRetriever` -- any ragnodes retriever or :class:`~rag.pipeline.Pipeline` as a
  ``langchain_core.retrievers.BaseRetriever`` (``invoke`` / ``ainvoke``; ``k`` and ``filter`` in
  the constructor or per call: ``invoke(q, k=3, filter={"year": {"$gte": 2020}})``, LangChain's
  filter dicts translated by :mod:`rag.app.integrations.filters`; through a pipeline the filter is
  applied before its rerankers). It passes the ``langchain-tests`` standard retriever suite.
* :class:`~rag.app.integrations.langchain_models.RagEmbeddings` /
  :class:`~rag.app.integrations.langchain_models.RagChatModel` -- ragnodes' encoders and generators
  as LangChain ``Embeddings`` and chat model (re-exported here).
* :class:`LangChainCompressor` -- any ragnodes reranker or compressor as a
  ``BaseDocumentCompressor`` (use it in a ``ContextualCompressionRetriever``).
* :func:`to_documents` / :func:`from_documents` / :func:`index_langchain_documents` -- LangChain
  ``Document`` <-> ragnodes :class:`~rag.core.types.Document`; ids and metadata are preserved
  (``Document.id`` first, then ``metadata["id"]``, else a content hash).

>>> from retrievers import BM25Retriever
>>> lc = LangChainRetriever(BM25Retriever().index(docs), k=3)   # doctest: +SKIP
>>> lc.invoke("largest planet")[0].metadata["id"]                          # doctest: +SKIP
'jupiter'

Needs the ``langchain`` extra (``pip install "ragnodes[langchain]"``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from pydantic import ConfigDict, Field

from rag.app.integrations.filters import from_langchain
from rag.core.extras import require
from rag.core.types import Document, Ranking
from rag.ingest.frameworks import (
    SCORE_KEY,
    asearch,
    check_postprocessor,
    check_searchable,
    content_id,
    out_metadata,
    postprocess,
    ranking_in_order,
    search,
    split_metadata,
)

try:
    from langchain_core.callbacks import (
        AsyncCallbackManagerForRetrieverRun,
        CallbackManagerForRetrieverRun,
        Callbacks,
    )
    from langchain_core.documents import BaseDocumentCompressor
    from langchain_core.documents import Document as LCDocument
    from langchain_core.retrievers import BaseRetriever
except ImportError:
    require("langchain_core", extra="langchain", feature="the LangChain adapters")
    raise


def to_documents(ranking: Ranking) -> list[LCDocument]:
    """LangChain Documents of a ranking, best first; ``metadata`` holds id, title and score."""
    return [
        LCDocument(
            page_content=h.document.text, metadata=out_metadata(h.document, h.score), id=h.id
        )
        for h in ranking.hits
    ]


def from_document(doc: LCDocument) -> Document:
    """A ragnodes Document from a LangChain one; a ``title`` metadata key becomes the title."""
    title, meta = split_metadata(doc.metadata)
    doc_id = doc.id or doc.metadata.get("id") or content_id(doc.page_content, meta)
    return Document(id=str(doc_id), text=doc.page_content, title=title, metadata=meta)


def from_documents(docs: Sequence[LCDocument]) -> list[Document]:
    return [from_document(d) for d in docs]


def index_langchain_documents(target: Any, docs: Sequence[LCDocument]) -> Any:
    """Index LangChain Documents (e.g. a loader's or text splitter's output) into a ragnodes
    retriever or pipeline; returns ``target``."""
    return target.index(from_documents(docs))


class LangChainRetriever(BaseRetriever):
    """A ragnodes retriever or pipeline behind LangChain's retriever interface.

    Args:
        retriever: an indexed ragnodes retriever, or a Pipeline (rerankers/compressors apply).
        k: documents returned per query (override per call: ``invoke(q, k=3)``).
        filter: metadata filter in ragnodes' filter language (:mod:`rag.core.filters`, MongoDB's
            operators, as LangChain's vector stores use: ``{"year": {"$gte": 2020}}``); override
            per call: ``invoke(q, filter=...)``.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    retriever: Any = Field(description="a ragnodes retriever or Pipeline")
    k: int = Field(4, ge=1)
    filter: dict[str, Any] | None = None

    def __init__(self, retriever: Any = None, /, **data: Any) -> None:
        # positional, as LlamaIndexRetriever(pipe): LangChainRetriever(pipe, k=3)
        if retriever is not None:
            data["retriever"] = retriever
        check_searchable(data.get("retriever"))  # a ConfigError here, not a ValidationError
        super().__init__(**data)

    def _search(self, query: str, k: int | None, filter: dict | None) -> list[LCDocument]:
        n = k if k is not None else self.k
        flt = from_langchain(filter if filter is not None else self.filter)
        return to_documents(search(self.retriever, query, n, flt))

    def _get_relevant_documents(
        self,
        query: str,
        *,
        run_manager: CallbackManagerForRetrieverRun,
        k: int | None = None,
        filter: dict | None = None,
    ) -> list[LCDocument]:
        return self._search(query, k, filter)

    async def _aget_relevant_documents(
        self,
        query: str,
        *,
        run_manager: AsyncCallbackManagerForRetrieverRun,
        k: int | None = None,
        filter: dict | None = None,
    ) -> list[LCDocument]:
        # off the event loop (a pipeline's worker pool), with the caller's span as parent
        n = k if k is not None else self.k
        flt = from_langchain(filter if filter is not None else self.filter)
        return to_documents(await asearch(self.retriever, query, n, flt))


class LangChainCompressor(BaseDocumentCompressor):
    """A ragnodes reranker or compressor as a LangChain document compressor.

    Input documents keep their order for compressors; a reranker reorders them. A document's
    ``metadata["score"]`` (if any) is its incoming score. ``top_n`` keeps the best ``n``.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    node: Any = Field(description="a ragnodes reranker or compressor")
    top_n: int | None = Field(None, ge=1)

    def __init__(self, **data: Any) -> None:
        check_postprocessor(data.get("node"))
        super().__init__(**data)

    def compress_documents(
        self, documents: Sequence[LCDocument], query: str, callbacks: Callbacks | None = None
    ) -> Sequence[LCDocument]:
        if not documents:
            return []
        scored = [(from_document(d), float(d.metadata.get(SCORE_KEY, 0.0))) for d in documents]
        return to_documents(postprocess(self.node, ranking_in_order(query, scored), self.top_n))

    async def acompress_documents(
        self, documents: Sequence[LCDocument], query: str, callbacks: Callbacks | None = None
    ) -> Sequence[LCDocument]:
        return await asyncio.to_thread(self.compress_documents, documents, query, callbacks)


from rag.app.integrations.langchain_models import RagChatModel, RagEmbeddings  # noqa: E402

__all__ = [
    "LangChainCompressor",
    "LangChainRetriever",
    "RagChatModel",
    "RagEmbeddings",
    "from_document",
    "from_documents",
    "index_langchain_documents",
    "to_documents",
]
