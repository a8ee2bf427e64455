"""Segmented BM25: incremental adds/deletes/merges score exactly like one bm25s index over the
same live documents (real corpora, every query word, bit-for-bit)."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import dataset_dir

from rag.index.persist import read_documents
from retrievers import BM25Retriever
from retrievers.bm25_segments import MAX_SEGMENTS


def reference_scores(r: BM25Retriever, query: str) -> np.ndarray:
    """One bm25s index over the retriever's live documents, in ``documents`` order."""
    import bm25s

    docs = [r.documents[i] for i in r.documents]
    ref = bm25s.BM25(k1=r.k1, b=r.b, method=r.method)
    ref.index(r.tokenize([r._text(d) for d in docs]), show_progress=False)
    toks = [t for t in r.tokenize([query])[0] if t in ref.vocab_dict]
    if not toks:
        return np.zeros(len(docs), dtype=np.float32)
    return np.asarray(ref.get_scores(toks), dtype=np.float32)


@pytest.mark.parametrize(
    "method", ["lucene", pytest.param("robertson", marks=pytest.mark.slow),
               pytest.param("atire", marks=pytest.mark.slow)],
)
def test_incremental_index_scores_equal_one_bm25s_index(method):
    docs = read_documents(dataset_dir("cisi") / "corpus.jsonl")[:900]
    queries = ["information retrieval evaluation", "library catalog classification systems",
               "the the of", "citation analysis of scientific journals journals"]
    r = BM25Retriever(method=method)
    for s in range(0, 600, 50):  # 12 batches: more than MAX_SEGMENTS, so merges happen too
        r.index(docs[s : s + 50])
    assert len(r._index.segments) <= MAX_SEGMENTS
    r.delete([d.id for d in docs[10:200:3]])
    r.index([d.model_copy(update={"text": d.text + " revised"}) for d in docs[300:320]])
    r.index(docs[600:900])
    r.delete([d.id for d in docs[650:700]])
    for q in queries:
        np.testing.assert_array_equal(r.scores(q), reference_scores(r, q))
    r.compact()
    assert len(r._index.segments) == 1
    for q in queries:
        np.testing.assert_array_equal(r.scores(q), reference_scores(r, q))


def test_reopened_segments_keep_scores_and_append(tmp_path, demo_docs):
    from rag.pipeline import Pipeline

    pipe = Pipeline(retriever=BM25Retriever()).index(demo_docs[:10])
    pipe.save(tmp_path / "idx")
    pipe.index(demo_docs[10:])
    pipe.delete([demo_docs[0].id])
    back = Pipeline.open(tmp_path / "idx")
    for q in ["largest planet", "rings of Saturn"]:
        np.testing.assert_array_equal(back.retriever.scores(q), reference_scores(back.retriever, q))
        assert back.search(q).ids == pipe.search(q).ids
    # the earlier segment's postings were kept, not rewritten: two BM25 segments on disk
    assert len(list((tmp_path / "idx").glob("*.bm25"))) == 2
