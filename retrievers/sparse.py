"""BM25 as sparse vectors: term weights computed here, IDF applied by the vector engine.

BM25 (Robertson & Zaragoza, "The Probabilistic Relevance Framework: BM25 and Beyond", 2009) splits
into a per-(term, document) factor and a per-term IDF::

    score(q, d) = sum_{t in q} qtf(t) * idf(t) * w(t, d)
    w(t, d)     = tf(t, d) / (tf(t, d) + k1 * (1 - b + b * |d| / avgdl))
    idf(t)      = ln(1 + (N - df(t) + 0.5) / (df(t) + 0.5))

``w`` is what a document's sparse vector stores (one entry per distinct term); Qdrant's
``Modifier.IDF`` multiplies each query entry by exactly this ``idf`` over the points that carry the
sparse vector, so a Qdrant sparse search returns bm25s's ``method="lucene"`` scores (bm25s, like
Lucene >= 8, drops the constant ``(k1 + 1)`` numerator factor; it does not change rankings).
The query vector holds each query term's count ``qtf`` (bm25s sums a repeated query term once per
occurrence; a binary query vector would rank differently on queries that repeat a word).

Tokens come from :meth:`retrievers.bm25.BM25Retriever.tokenize` (same regex, Snowball stemmer and
stopwords); a token's sparse index is a 32-bit BLAKE2b hash of the token, so every process and
every replica agrees on the vocabulary without storing one (two tokens of a 30k-term vocabulary
collide with probability ~10%; a collision merges two terms' document frequencies).

>>> enc = BM25SparseEncoder()
>>> idx, val = enc.query_vector("cats and cats")
>>> len(idx), float(val[0])
(1, 2.0)
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np

from rag.core.nodes import Node
from rag.core.types import Document

SparseVec = tuple[np.ndarray, np.ndarray]  # (indices uint32 (T,), values float32 (T,))


def term_index(token: str) -> int:
    """The sparse dimension of ``token``: its BLAKE2b-32 hash (stable across processes)."""
    return int.from_bytes(hashlib.blake2b(token.encode("utf-8"), digest_size=4).digest(), "little")


def _counts(tokens: Sequence[str]) -> SparseVec:
    c = Counter(term_index(t) for t in tokens)
    idx = np.fromiter(c.keys(), dtype=np.uint32, count=len(c))
    val = np.fromiter(c.values(), dtype=np.float32, count=len(c))
    order = np.argsort(idx)
    return idx[order], val[order]


class BM25SparseEncoder(Node):
    """Documents and queries as BM25 sparse vectors for an engine that applies IDF itself.

    Args:
        k1, b: BM25 saturation and length normalisation (Anserini defaults 0.9 / 0.4).
        stemmer: Snowball language or ``None`` (as :class:`~retrievers.bm25.BM25Retriever`).
        stopwords: bm25s stopword list name or ``None``.
        fields: ``title+text`` or ``text``.
    """

    name: ClassVar[str] = "bm25_sparse"
    kind: ClassVar[str] = "encoder"
    requires: ClassVar[tuple[str, ...]] = ("bm25s", "Stemmer")

    def __init__(
        self,
        k1: float = 0.9,
        b: float = 0.4,
        stemmer: str | None = "english",
        stopwords: str | None = "en",
        fields: str = "title+text",
    ) -> None:
        from retrievers.bm25 import BM25Retriever

        # the tokenizer, stemmer, stopwords and checks are BM25Retriever's own; only "lucene"
        # has Qdrant's IDF, so the method is fixed
        self._bm25 = BM25Retriever(k1, b, "lucene", stemmer, stopwords, fields)
        self.k1 = k1
        self.b = b
        self.stemmer = stemmer
        self.stopwords = stopwords
        self.fields = fields

    def _load(self) -> None:
        self._bm25.load()

    def tokens(self, docs: Sequence[Document]) -> list[list[str]]:
        """BM25Retriever's tokens of each document's indexed field(s)."""
        self.load()
        texts = [d.full_text if self.fields == "title+text" else d.text for d in docs]
        return self._bm25.tokenize(texts)

    def document_vectors(self, tokens: Sequence[Sequence[str]], avgdl: float) -> list[SparseVec]:
        """Per document ``w(t, d)`` over its distinct terms, with the corpus' ``avgdl``."""
        if not avgdl > 0:
            avgdl = 1.0  # an all-empty corpus: every vector is empty anyway
        out = []
        for toks in tokens:
            idx, tf = _counts(toks)
            norm = self.k1 * (1.0 - self.b + self.b * len(toks) / avgdl)
            out.append((idx, (tf / (tf + norm)).astype(np.float32)))
        return out

    def query_vector(self, text: str) -> SparseVec:
        """Query term counts ``qtf(t)`` (IDF is the engine's)."""
        self.load()
        return _counts(self._bm25.tokenize([text])[0])

    def stats_key(self) -> dict[str, Any]:
        """What a stored collection's weights depend on (checked when it is reopened)."""
        return {
            "k1": self.k1,
            "b": self.b,
            "stemmer": self.stemmer,
            "stopwords": self.stopwords,
            "fields": self.fields,
            "hash": "blake2b32",
        }
