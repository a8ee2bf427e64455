"""The embedding reranker keeps document vectors in the library's one document-vector cache
(rag.core.embed_cache): a second rerank over the same documents runs the real MiniLM model on the
query only, and with an on-disk cache a fresh process reads the documents back from disk.
Encoder calls are counted on the real model (a TransformerEncoder that records what reaches it)."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")

from rag.core import embed_cache  # noqa: E402
from rag.core.encoders import TransformerEncoder  # noqa: E402
from rag.core.types import Document, Query, Ranking  # noqa: E402
from rerankers import EmbeddingReranker  # noqa: E402

DOCS = [
    Document(id="d1", title="BM25", text="a bag-of-words ranking function"),
    Document(id="d2", text="dense retrieval embeds queries and passages"),
    Document(id="d3", text="late interaction keeps one vector per token"),
    Document(id="d4", text="cross-encoders read the query and passage together"),
]


class CountingEncoder(TransformerEncoder):
    """MiniLM, recording every batch of texts the model itself encodes."""

    def _encode(self, texts, progress=False):  # noqa: ANN001, ANN202
        self.encoded = [*getattr(self, "encoded", []), list(texts)]
        return super()._encode(texts, progress)


def ranking(qtext: str, docs=DOCS) -> Ranking:  # noqa: ANN001
    return Ranking.from_scored(Query(text=qtext, id=qtext), ((d, 0.0) for d in docs))


@pytest.fixture(autouse=True)
def _no_default_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RAGNODES_EMBED_CACHE", raising=False)
    embed_cache.set_default(None)


def test_a_second_rerank_over_the_same_documents_does_not_re_encode() -> None:
    rr = EmbeddingReranker(CountingEncoder(max_length=64)).load()
    first = rr.rerank(ranking("what is bm25"))
    assert rr.encoder.encoded == [["what is bm25"], [d.full_text for d in DOCS]]
    rr.encoder.encoded = []
    second = rr.rerank_batch([ranking("token vectors"), ranking("bm25", DOCS[:2])])
    assert rr.encoder.encoded == [["token vectors"], ["bm25"]]  # queries only
    assert rr._cache.stats == {"hits": 6, "misses": 4}
    # the same scores as a reranker that keeps nothing and encodes every time
    plain = EmbeddingReranker(CountingEncoder(max_length=64), cache_size=0)
    assert plain.rerank(ranking("what is bm25")) == first
    again = plain.rerank(ranking("token vectors"))
    assert again.ids == second[0].ids
    np.testing.assert_allclose(again.scores, second[0].scores, rtol=0, atol=1e-6)
    assert plain.encoder.encoded[-1] == [d.full_text for d in DOCS]


def test_seeded_and_on_disk_vectors_are_used_without_encoding(tmp_path) -> None:
    # seeded from elsewhere (a dense index's vectors): nothing encoded but the query
    enc = CountingEncoder(max_length=64).load()
    vectors = enc.encode([d.full_text for d in DOCS])
    rr = EmbeddingReranker(enc)
    rr.cache_vectors(DOCS, vectors)
    enc.encoded = []
    seeded = rr.rerank(ranking("dense passages"))
    assert enc.encoded == [["dense passages"]]
    # an encoder with an on-disk cache: a fresh process (new reranker, new cache objects)
    # finds the documents on disk
    disk = EmbeddingReranker(CountingEncoder(max_length=64, cache=str(tmp_path)))
    assert disk.rerank(ranking("dense passages")) == seeded
    embed_cache._caches.clear()
    fresh = EmbeddingReranker(CountingEncoder(max_length=64, cache=str(tmp_path)))
    assert fresh.rerank(ranking("dense passages")) == seeded
    assert fresh.encoder.encoded == [["dense passages"]]
