"""LangChain adapters: the langchain-tests standard retriever suite (a peer's own tests) on a
ragnodes retriever and on a pipeline, Documents in both directions, rerankers as compressors."""

from __future__ import annotations

import asyncio
import sys

import pytest

pytest.importorskip("langchain_core")
standard = pytest.importorskip("langchain_tests.integration_tests")

from langchain_core.documents import Document as LCDocument  # noqa: E402

from rag.app.cli import demo_corpus_path  # noqa: E402
from rag.app.integrations.langchain import (  # noqa: E402
    LangChainCompressor,
    LangChainRetriever,
    from_document,
    index_langchain_documents,
)
from rag.core.errors import ConfigError, MissingExtraError  # noqa: E402
from rag.index.persist import read_documents  # noqa: E402
from rag.pipeline import Pipeline  # noqa: E402
from retrievers import BM25Retriever  # noqa: E402

QUERY = "Which planet is the largest in the Solar System?"


def _bm25() -> BM25Retriever:
    return BM25Retriever().index(read_documents(demo_corpus_path()))


BM25 = _bm25()


@pytest.mark.anyio  # runs the suite's async test (ainvoke) on asyncio
class TestRetrieverStandard(standard.RetrieversIntegrationTests):
    @property
    def retriever_constructor(self) -> type[LangChainRetriever]:
        return LangChainRetriever

    @property
    def retriever_constructor_params(self) -> dict:
        return {"retriever": BM25, "k": 4}

    @property
    def retriever_query_example(self) -> str:
        return QUERY


@pytest.mark.anyio
class TestPipelineStandard(TestRetrieverStandard):
    @property
    def retriever_constructor_params(self) -> dict:
        return {"retriever": Pipeline(retriever=BM25, k=5), "k": 4}


def test_results_match_ragnodes_and_keep_metadata():
    lc = LangChainRetriever(retriever=BM25, k=5)
    docs = lc.invoke(QUERY)
    direct = BM25.retrieve(QUERY, k=5)
    assert [d.id for d in docs] == direct.ids
    assert [d.metadata["score"] for d in docs] == pytest.approx(direct.scores)
    for d, h in zip(docs, direct.hits):
        assert d.page_content == h.document.text
        assert d.metadata["title"] == h.document.title
        assert d.metadata["topic"] == h.document.metadata["topic"]
    assert [d.id for d in asyncio.run(lc.ainvoke(QUERY, k=2))] == direct.ids[:2]


def test_ingest_langchain_documents_keeps_ids_and_metadata():
    lc_docs = [
        LCDocument(id="a", page_content="Otters hold hands while sleeping.", metadata={"y": 1}),
        LCDocument(page_content="Penguins propose with pebbles.", metadata={"id": "b", "y": 2}),
        LCDocument(page_content="Crows remember human faces.", metadata={"title": "Crows"}),
    ]
    r = index_langchain_documents(BM25Retriever(), lc_docs)
    hashed = from_document(lc_docs[2]).id
    assert set(r.documents) == {"a", "b", hashed}
    assert from_document(lc_docs[2]).id == hashed  # stable content id
    assert r.documents["b"].metadata == {"y": 2}
    assert r.documents[hashed].title == "Crows"
    out = LangChainRetriever(retriever=r, k=1, filter={"y": 2}).invoke("pebbles")
    assert [d.id for d in out] == ["b"] and out[0].metadata["y"] == 2


def test_compressor_adapter_equals_the_node(minilm):
    from rag.compressors import LostInTheMiddleReorder
    from rerankers import EmbeddingReranker

    docs = LangChainRetriever(retriever=BM25, k=6).invoke(QUERY)
    ranking = BM25.retrieve(QUERY, k=6)
    rr = EmbeddingReranker(encoder=minilm)
    got = LangChainCompressor(node=rr, top_n=3).compress_documents(docs, QUERY)
    assert [d.id for d in got] == rr.rerank(ranking, k=3).ids
    lim = LostInTheMiddleReorder()
    got = LangChainCompressor(node=lim).compress_documents(docs, QUERY)
    assert [d.id for d in got] == lim.compress(ranking).ids
    assert "compression" in got[0].metadata


def test_bad_arguments():
    with pytest.raises(ConfigError, match="retriever or Pipeline"):
        LangChainRetriever(retriever=object())
    with pytest.raises(ConfigError, match="reranker"):
        LangChainCompressor(node=BM25)


def test_missing_extra_names_the_install(monkeypatch):
    for name in [m for m in sys.modules if m.split(".")[0] == "langchain_core"]:
        monkeypatch.setitem(sys.modules, name, None)  # a cached submodule would still import
    monkeypatch.delitem(sys.modules, "rag.app.integrations.langchain")
    with pytest.raises(MissingExtraError, match=r"ragnodes\[langchain\]"):
        import rag.app.integrations.langchain  # noqa: F401
