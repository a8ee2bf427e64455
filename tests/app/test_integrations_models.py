"""ragnodes' encoders and generators inside LangChain and LlamaIndex: real chains, a vector store
and a query engine, an agent step with tool calls, per-call filters in each framework's own
syntax. MiniLM and SmolLM2-135M (few tokens) do the work; nothing of ragnodes is mocked."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from rag.app.cli import demo_corpus_path
from rag.core.errors import ConfigError
from rag.index.persist import read_documents
from rag.pipeline import Pipeline
from retrievers import BM25Retriever

QUERY = "Which planet has the Great Red Spot?"
DOCS = read_documents(demo_corpus_path())


@pytest.fixture(scope="module")
def bm25():
    return BM25Retriever().index(DOCS)


@pytest.fixture(scope="module")
def dense(minilm):
    from retrievers import DenseRetriever

    return DenseRetriever(encoder=minilm).index(DOCS)


# -- LangChain ------------------------------------------------------------------------------------
def test_langchain_embeddings_in_a_vector_store(minilm, dense):
    pytest.importorskip("langchain_core")
    from langchain_core.documents import Document as LCDocument
    from langchain_core.vectorstores import InMemoryVectorStore

    from rag.app.integrations.langchain import RagEmbeddings

    emb = RagEmbeddings(dense)  # the index's own encoder
    assert np.allclose(emb.embed_query(QUERY), minilm.encode([QUERY], kind="query")[0])
    store = InMemoryVectorStore(embedding=emb)
    store.add_documents([LCDocument(id=d.id, page_content=d.full_text) for d in DOCS])
    found = store.similarity_search(QUERY, k=3)
    assert [d.id for d in found] == dense.retrieve(QUERY, k=3).ids
    with pytest.raises(ConfigError, match="dense/hybrid"):
        RagEmbeddings(BM25Retriever())


def test_langchain_chat_model_chain_and_stream(smollm, bm25):
    pytest.importorskip("langchain_core")
    from langchain_core.output_parsers import StrOutputParser
    from langchain_core.prompts import ChatPromptTemplate
    from langchain_core.runnables import RunnablePassthrough

    from rag.app.integrations.langchain import LangChainRetriever, RagChatModel

    chat = RagChatModel(generator=smollm, max_new_tokens=8)
    retriever = LangChainRetriever(retriever=Pipeline(retriever=bm25), k=2)
    prompt = ChatPromptTemplate.from_messages(
        [
            ("system", "Answer from the context."),
            ("user", "Context: {context}\nQuestion: {question}"),
        ]
    )
    chain = (
        {
            "context": retriever | (lambda docs: " ".join(d.page_content for d in docs)),
            "question": RunnablePassthrough(),
        }
        | prompt
        | chat
        | StrOutputParser()
    )
    out = chain.invoke(QUERY)
    ctx = " ".join(h.document.text for h in bm25.retrieve(QUERY, k=2).hits)
    messages = [
        {"role": "system", "content": "Answer from the context."},
        {"role": "user", "content": f"Context: {ctx}\nQuestion: {QUERY}"},
    ]
    assert out and out == smollm.generate(messages, max_new_tokens=8)  # greedy: the same text
    pieces = list(chain.stream(QUERY))
    assert len(pieces) > 1 and "".join(pieces) == out
    assert asyncio.run(chain.ainvoke(QUERY)) == out


def test_langchain_retriever_filters_per_call(bm25):
    pytest.importorskip("langchain_core")
    from rag.app.integrations.langchain import LangChainRetriever
    from rerankers import EmbeddingReranker  # noqa: F401  (a reranked pipeline below)

    docs = [
        *DOCS,
        *(d.model_copy(update={"id": f"{d.id}-new", "metadata": {"year": 2024}}) for d in DOCS[:3]),
    ]
    pipe = Pipeline(retriever=BM25Retriever().index(docs), k=4)
    lc = LangChainRetriever(retriever=pipe, k=4)
    got = lc.invoke("planet", filter={"year": {"$gte": 2020}})
    assert got and {d.metadata["year"] for d in got} == {2024}
    assert len(lc.invoke("planet", k=1, filter={"$and": [{"year": {"$eq": 2024}}]})) == 1
    assert all("year" not in d.metadata for d in lc.invoke("planet", filter={"topic": "astronomy"}))
    # $ne is part of the filter language now (docs/filters.md); a missing year is not 2024
    ne = lc.invoke("planet", filter={"year": {"$ne": 2024}})
    assert ne and {d.metadata.get("year") for d in ne} == {None}
    with pytest.raises(ConfigError, match=r"\$regex"):
        lc.invoke("planet", filter={"year": {"$regex": "20.."}})


def test_langchain_agent_step_with_tool_calls(smollm, bm25):
    """One agent round trip: the chat model calls ragnodes' search tool, the tool returns the
    documents as an artifact, the model answers from the result."""
    pytest.importorskip("langchain_core")
    from langchain_core.messages import HumanMessage

    from rag.app.integrations.langchain import RagChatModel
    from rag.app.integrations.tools import RagTools

    search, fetch = RagTools(Pipeline(retriever=bm25, k=3)).as_langchain()
    model = RagChatModel(generator=smollm, max_new_tokens=32).bind_tools([search, fetch])
    question = HumanMessage("Which planet has the most moons?")
    ai = model.invoke([question])
    assert ai.tool_calls and ai.tool_calls[0]["name"] == "search", ai
    result = search.invoke(ai.tool_calls[0])  # a ToolMessage: JSON for the model, documents aside
    assert result.artifact and result.artifact[0].metadata["id"] in bm25.documents
    final = model.invoke([question, ai, result])
    assert final.content or final.tool_calls  # the loop goes on from the tool's result
    assert "ragnodes" == model.bound._llm_type


# -- LlamaIndex -----------------------------------------------------------------------------------
def test_llamaindex_embedding_in_a_vector_index(minilm, dense):
    pytest.importorskip("llama_index.core")
    from llama_index.core import VectorStoreIndex
    from llama_index.core.schema import TextNode

    from rag.app.integrations.llamaindex import RagEmbedding

    emb = RagEmbedding(minilm)
    nodes = [TextNode(id_=d.id, text=d.full_text) for d in DOCS]
    index = VectorStoreIndex(nodes, embed_model=emb)
    got = index.as_retriever(similarity_top_k=3).retrieve(QUERY)
    assert [n.node.node_id for n in got] == dense.retrieve(QUERY, k=3).ids
    assert np.allclose(emb.get_text_embedding(DOCS[0].text), minilm.encode([DOCS[0].text])[0])


def test_llamaindex_llm_query_engine_and_stream(smollm, bm25):
    pytest.importorskip("llama_index.core")
    from llama_index.core.base.llms.types import ChatMessage
    from llama_index.core.query_engine import RetrieverQueryEngine

    from rag.app.integrations.llamaindex import LlamaIndexRetriever, RagLLM

    llm = RagLLM(generator=smollm, max_new_tokens=8)
    engine = RetrieverQueryEngine.from_args(LlamaIndexRetriever(bm25, k=2), llm=llm)
    response = engine.query(QUERY)
    assert str(response).strip()
    assert [n.node.node_id for n in response.source_nodes] == bm25.retrieve(QUERY, k=2).ids
    streaming = RetrieverQueryEngine.from_args(
        LlamaIndexRetriever(bm25, k=2), llm=llm, streaming=True
    )
    pieces = list(streaming.query(QUERY).response_gen)
    assert len(pieces) > 1 and "".join(pieces) == str(response)
    msgs = [ChatMessage(role="user", content="Say hi.")]
    chat = llm.chat(msgs).message.content
    assert chat == smollm.generate([{"role": "user", "content": "Say hi."}], max_new_tokens=8)
    assert "".join(r.delta for r in llm.stream_chat(msgs)) == chat


def test_llamaindex_metadata_filters_through_a_reranked_pipeline(bm25, minilm):
    pytest.importorskip("llama_index.core")
    from llama_index.core.vector_stores import (
        FilterOperator,
        MetadataFilter,
        MetadataFilters,
    )

    from rag.app.integrations.llamaindex import LlamaIndexRetriever
    from rerankers import EmbeddingReranker

    docs = [
        *DOCS,
        *(d.model_copy(update={"id": f"{d.id}-new", "metadata": {"year": 2024}}) for d in DOCS[:3]),
    ]
    pipe = Pipeline(
        retriever=BM25Retriever().index(docs), rerankers=[EmbeddingReranker(encoder=minilm)], k=5
    )
    filters = MetadataFilters(
        filters=[MetadataFilter(key="year", value=2020, operator=FilterOperator.GT)]
    )
    got = LlamaIndexRetriever(pipe, k=5, filters=filters).retrieve("planet")
    assert sorted(n.node.node_id for n in got) == sorted(f"{d.id}-new" for d in DOCS[:3])
    ne = MetadataFilters(
        filters=[MetadataFilter(key="year", value=2024, operator=FilterOperator.NE)]
    )
    got = LlamaIndexRetriever(pipe, k=5, filters=ne).retrieve("planet")
    assert got and all(n.node.metadata.get("year") != 2024 for n in got)
    bad = MetadataFilters(
        filters=[MetadataFilter(key="y", value="x", operator=FilterOperator.TEXT_MATCH)]
    )
    with pytest.raises(ConfigError, match="text_match"):
        LlamaIndexRetriever(pipe, filters=bad)


def test_llamaindex_nodes_keep_ref_doc_id():
    pytest.importorskip("llama_index.core")
    from llama_index.core import Document as LIDocument
    from llama_index.core.node_parser import SentenceSplitter

    from rag.app.integrations.llamaindex import LlamaIndexRetriever, index_llama_documents

    text = " ".join(d.text for d in DOCS[:6])
    splitter = SentenceSplitter(chunk_size=48, chunk_overlap=0, tokenizer=str.split)
    r = index_llama_documents(BM25Retriever(), [LIDocument(id_="book", text=text)], splitter)
    hits = LlamaIndexRetriever(r, k=2).retrieve("planet")
    assert hits and all(h.node.ref_doc_id == "book" for h in hits)
    assert all(h.node.source_node.node_id == "book" for h in hits)
