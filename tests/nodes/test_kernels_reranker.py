"""Late interaction reads token vectors computed at index time: a pipeline's index builds the
reranker's token store, queries encode no document, scores equal the encode-per-query path."""

from __future__ import annotations

import pytest
from conftest import SHARED, needs_dataset
from tolerance import EPS16, assert_same_ranking, maxsim_tol

from rag.pipeline import Pipeline
from rerankers import LateInteractionReranker
from retrievers import BM25Retriever
from retrievers.multivector import TokenEncoder

ADI = SHARED / "adi"
pytestmark = needs_dataset("adi")


class CountingEncoder(TokenEncoder):
    """The real encoder, counting the documents it encodes (a spy, not a mock)."""

    documents_encoded = 0

    def encode_documents(self, texts):  # noqa: ANN001, ANN201
        type(self).documents_encoded += len(texts)
        return super().encode_documents(texts)


@pytest.fixture(scope="module")
def adi():
    from rag.index.persist import read_documents, read_jsonl

    docs = read_documents(ADI / "corpus.jsonl")[:10]
    return docs, [q["text"] for q in read_jsonl(ADI / "queries.jsonl")[:2]]


def test_pipeline_index_builds_the_store_and_queries_encode_no_document(adi, tmp_path) -> None:
    docs, queries = adi
    enc = CountingEncoder(precision="fp32")
    rr = LateInteractionReranker(encoder=enc, cache_size=0)
    pipe = Pipeline(retriever=BM25Retriever(), rerankers=[rr], k=5, candidates=10).index(docs)
    assert rr.token_store is not None and rr.token_store.count() == len(docs)
    before = CountingEncoder.documents_encoded
    stages = pipe.run_stages(queries)
    assert CountingEncoder.documents_encoded == before  # nothing encoded at query time
    # the same scores as encoding the candidates per query (float16-rounded either way). The
    # batches differ (all documents vs one query's candidates: other padding, other BLAS shapes),
    # so a token component may round to the neighbouring float16: <= eps16 per unit token, plus
    # the float32 MaxSim error, summed over the query's tokens
    fresh = LateInteractionReranker(encoder=enc, cache_size=0)
    for pool, got in zip(stages["retrieve"], stages[f"rerank:0:{rr.name}"], strict=True):
        want = fresh.rerank(pool, k=5)
        q = enc.encode_queries([pool.query.text])[0]
        tol = maxsim_tol(len(q), q.shape[1]) + len(q) * EPS16
        every = fresh.rerank(pool)
        full = dict(zip(every.ids, every.scores, strict=True))
        assert_same_ranking(got, want, tol, full)
    assert CountingEncoder.documents_encoded > before  # (the fresh one did encode)
    # saved beside the first stage and reopened with the pipeline
    pipe.save(tmp_path / "idx")
    opened = Pipeline.open(tmp_path / "idx")
    assert opened.rerankers[0].token_store.count() == len(docs)
    # a document whose text changed is not served from the store
    changed = docs[0].model_copy(update={"text": "entirely different words"})
    assert rr._stored([changed, docs[1]]) == [False, True]
