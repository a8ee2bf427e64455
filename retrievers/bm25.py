"""BM25 over bm25s (Lù, 2024), with Snowball stemming and stopword removal.

Score of document d for query q (``method="lucene"``, Robertson et al. with Lucene's idf)::

    sum_{t in q} idf(t) * tf(t, d) * (k1 + 1) / (tf(t, d) + k1 * (1 - b + b * |d| / avgdl))
    idf(t) = ln(1 + (N - df(t) + 0.5) / (df(t) + 0.5))

Defaults ``k1=0.9, b=0.4`` are Anserini/Pyserini's (the BEIR leaderboard's BM25 flat baseline).
The index is rebuilt lazily after additions or deletions (bm25s indexes are static); search scores
every document so that metadata filters and ties are exact. A ranking holds only documents that
match at least one query term: a stopword-only query returns no hits rather than arbitrary ones.

>>> r = BM25Retriever().index([{"id": "a", "text": "cats purr"}, {"id": "b", "text": "dogs bark"}])
>>> r.retrieve("a cat", k=1).ids
['a']
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from rag.errors import ConfigError
from rag.nodes import BaseRetriever
from rag.persist import atomic_write_text
from rag.types import Document, Query
from retrievers.kernels import bm25 as kbm25
from retrievers.stores.filters import matches, validate_filter

METHODS = ("lucene", "robertson", "atire", "bm25l", "bm25+")
FIELDS = ("title+text", "text")


class BM25Retriever(BaseRetriever):
    """Lexical retrieval with bm25s.

    Args:
        k1, b: BM25 saturation and length normalisation.
        method: bm25s variant (``lucene`` default).
        stemmer: Snowball language (``english``) or ``None``.
        stopwords: bm25s stopword list name (``en``) or ``None``.
        fields: ``title+text`` (BEIR convention) or ``text``.
    """

    name: ClassVar[str] = "bm25"
    # a ranking holds only documents that share a term with the query (the contract allows it)
    matching_only: ClassVar[bool] = True

    def __init__(
        self,
        k1: float = 0.9,
        b: float = 0.4,
        method: str = "lucene",
        stemmer: str | None = "english",
        stopwords: str | None = "en",
        fields: str = "title+text",
    ) -> None:
        if method not in METHODS:
            raise ConfigError(f"method must be one of {METHODS}, got {method!r}")
        if fields not in FIELDS:
            raise ConfigError(f"fields must be one of {FIELDS}, got {fields!r}")
        if k1 < 0 or not 0 <= b <= 1:
            raise ConfigError(f"need k1 >= 0 and 0 <= b <= 1, got k1={k1}, b={b}")
        self.k1 = k1
        self.b = b
        self.method = method
        self.stemmer = stemmer
        self.stopwords = stopwords
        self.fields = fields
        self._bm25: Any = None
        self._order: list[str] = []

    def _load(self) -> None:
        import Stemmer

        self._stem = Stemmer.Stemmer(self.stemmer) if self.stemmer else None

    def tokenize(self, texts: list[str]) -> list[list[str]]:
        import bm25s

        self.load()
        return bm25s.tokenize(  # type: ignore[no-any-return]
            texts,
            stopwords=self.stopwords or [],
            stemmer=self._stem,
            return_ids=False,
            show_progress=False,
        )

    def _text(self, d: Document) -> str:
        return d.full_text if self.fields == "title+text" else d.text

    def _add(self, docs: list[Document]) -> None:
        self._bm25 = None  # rebuilt on next search

    def _delete(self, ids: list[str]) -> None:
        self._bm25 = None

    def _build(self) -> None:
        import bm25s

        # built aside and published at the end: a concurrent search never sees a half-built index
        order = list(self.documents)
        bm25 = bm25s.BM25(k1=self.k1, b=self.b, method=self.method)
        tokens = self.tokenize([self._text(self.documents[i]) for i in order])
        # bm25s needs at least one token per corpus; an all-stopword corpus scores zero
        bm25.index(tokens if any(tokens) else [["\x00"]] * len(tokens), show_progress=False)
        self._order, self._bm25 = order, bm25

    def scores(self, query: str) -> np.ndarray:
        """BM25 score of every indexed document for ``query``, in ``documents`` order ``(N,)``."""
        if self._bm25 is None:
            self._build()
        vocab = self._bm25.vocab_dict
        toks = [t for t in self.tokenize([query])[0] if t in vocab]
        if not toks:
            return np.zeros(len(self._order), dtype=np.float32)
        return np.asarray(self._bm25.get_scores(toks), dtype=np.float32)

    def _search(
        self, queries: list[Query], k: int, filter: dict | None
    ) -> list[list[tuple[str, float]]]:
        validate_filter(filter)
        if self._bm25 is None:
            self._build()
        mask = None
        if filter:
            mask = np.array([matches(self.documents[i].metadata, filter) for i in self._order])
        # one tokenizer call and one scoring pass for the batch (retrievers.kernels.bm25)
        idx, vals = kbm25.topk(self._bm25, self.tokenize([q.text for q in queries]), k, mask)
        # only documents that match at least one query term (a non-zero BM25 term sum): padding
        # a ranking with zero-score documents hands the generator noise as context
        return [
            [(self._order[j], v) for j, v in zip(ri, rv) if v != -np.inf and v != 0]
            for ri, rv in zip(idx.tolist(), vals.tolist())
        ]

    def _save_state(self, path: Path) -> None:
        if self._bm25 is None and self.documents:
            self._build()
        if self._bm25 is not None:
            self._bm25.save(str(path / "bm25"), show_progress=False)
            atomic_write_text(path / "bm25" / "order.json", json.dumps(self._order))

    def _load_state(self, path: Path) -> None:
        import bm25s

        if not (path / "bm25" / "order.json").exists():
            return super()._load_state(path)
        self.load()
        self._order = json.loads((path / "bm25" / "order.json").read_text(encoding="utf-8"))
        self._bm25 = bm25s.BM25.load(str(path / "bm25"), mmap=True, show_progress=False)
