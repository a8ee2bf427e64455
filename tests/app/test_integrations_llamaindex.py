"""LlamaIndex adapters inside a real RetrieverQueryEngine (MockLLM: nothing calls a provider),
and LlamaIndex documents chunked by its SentenceSplitter into a ragnodes index."""

from __future__ import annotations

import asyncio

import pytest

pytest.importorskip("llama_index.core")

from llama_index.core import Document as LIDocument  # noqa: E402
from llama_index.core import Settings  # noqa: E402
from llama_index.core.llms import MockLLM  # noqa: E402
from llama_index.core.node_parser import SentenceSplitter  # noqa: E402
from llama_index.core.query_engine import RetrieverQueryEngine  # noqa: E402
from llama_index.core.schema import QueryBundle  # noqa: E402

from rag.app.cli import demo_corpus_path  # noqa: E402
from rag.app.integrations.llamaindex import (  # noqa: E402
    LlamaIndexPostprocessor,
    LlamaIndexRetriever,
    index_llama_documents,
)
from rag.core.errors import ConfigError  # noqa: E402
from rag.index.persist import read_documents  # noqa: E402
from rag.pipeline import Pipeline  # noqa: E402
from retrievers import BM25Retriever  # noqa: E402

QUERY = "Which planet is the largest in the Solar System?"


@pytest.fixture(scope="module")
def bm25():
    return BM25Retriever().index(read_documents(demo_corpus_path()))


@pytest.fixture
def mock_llm():
    """Settings.llm is a MockLLM that echoes its prompt, restored afterwards."""
    before = Settings._llm
    Settings.llm = MockLLM()
    yield Settings.llm
    Settings._llm = before


def test_query_engine_with_retriever_and_reranker(bm25, minilm, mock_llm):
    from rerankers import EmbeddingReranker

    rr = EmbeddingReranker(encoder=minilm)
    engine = RetrieverQueryEngine.from_args(
        LlamaIndexRetriever(bm25, k=8),
        node_postprocessors=[LlamaIndexPostprocessor(node=rr, top_n=3)],
    )
    response = engine.query(QUERY)
    expected = Pipeline(retriever=bm25, rerankers=[rr], k=3, candidates=8).search(QUERY)
    assert [n.node.node_id for n in response.source_nodes] == expected.ids
    assert [n.score for n in response.source_nodes] == pytest.approx(expected.scores)
    for n, h in zip(response.source_nodes, expected.hits):
        assert n.node.metadata["topic"] == h.document.metadata["topic"]
        assert n.node.metadata["title"] == h.document.title
    # the MockLLM echoes the prompt: the reranked contexts reached the response synthesizer
    assert expected.hits[0].document.text in str(response)
    aresponse = asyncio.run(engine.aquery(QUERY))
    assert [n.node.node_id for n in aresponse.source_nodes] == expected.ids


def test_retriever_matches_ragnodes(bm25):
    nodes = LlamaIndexRetriever(Pipeline(retriever=bm25, k=5), k=4).retrieve(QUERY)
    assert [n.node.node_id for n in nodes] == bm25.retrieve(QUERY, k=4).ids


def test_compressor_postprocessor_keeps_order_rules(bm25):
    from rag.compressors import LostInTheMiddleReorder

    nodes = LlamaIndexRetriever(bm25, k=6).retrieve(QUERY)
    lim = LostInTheMiddleReorder()
    out = LlamaIndexPostprocessor(node=lim).postprocess_nodes(nodes, query_str=QUERY)
    assert [n.node.node_id for n in out] == lim.compress(bm25.retrieve(QUERY, k=6)).ids
    with pytest.raises(ConfigError, match="query"):
        LlamaIndexPostprocessor(node=lim).postprocess_nodes(nodes)
    with pytest.raises(ConfigError, match="reranker"):
        LlamaIndexPostprocessor(node=bm25)


def test_sentence_splitter_ingestion_keeps_ids_and_metadata():
    docs = read_documents(demo_corpus_path())
    li_docs = [
        LIDocument(id_="part-a", text=" ".join(d.text for d in docs[:12]), metadata={"part": "a"}),
        LIDocument(id_="part-b", text=" ".join(d.text for d in docs[12:]), metadata={"part": "b"}),
    ]
    # whitespace tokens: no tiktoken vocabulary to load (the chunking logic is the same)
    splitter = SentenceSplitter(chunk_size=64, chunk_overlap=0, tokenizer=str.split)
    nodes = splitter.get_nodes_from_documents(li_docs)
    r = index_llama_documents(BM25Retriever(), li_docs, node_parser=splitter)
    assert len(r) == len(nodes) > 2
    by_text = {n.get_content(): n for n in nodes}
    for doc in r.documents.values():
        src = by_text[doc.text]
        assert doc.metadata == {"part": src.metadata["part"], "ref_doc_id": src.ref_doc_id}
    hit = LlamaIndexRetriever(r, k=1).retrieve(QueryBundle(QUERY))[0]
    jupiter = next(d for d in docs if d.id == "jupiter")
    part = "a" if jupiter in docs[:12] else "b"
    assert hit.node.metadata["ref_doc_id"] == f"part-{part}"
    assert hit.node.node_id in r.documents
