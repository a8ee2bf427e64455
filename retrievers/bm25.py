"""BM25 over bm25s (Lù, 2024), with Snowball stemming and stopword removal.

Score of document d for query q (``method="lucene"``, Robertson et al. with Lucene's idf)::

    sum_{t in q} idf(t) * tf(t, d) * (k1 + 1) / (tf(t, d) + k1 * (1 - b + b * |d| / avgdl))
    idf(t) = ln(1 + (N - df(t) + 0.5) / (df(t) + 0.5))

Defaults ``k1=0.9, b=0.4`` are Anserini/Pyserini's (the BEIR leaderboard's BM25 flat baseline).
Postings live in immutable segments with global statistics (:mod:`retrievers.bm25_segments`): an
addition appends a segment and a deletion clears a live bit, nothing is rebuilt, and scores equal
those of one bm25s index over the live documents (``bm25l``/``bm25+`` still rebuild a bm25s index
lazily, searched in batches by :mod:`retrievers.kernels.bm25`). Search scores every document so
that metadata filters and ties are exact. A ranking holds only documents that match at least one
query term: a stopword-only query returns no hits rather than arbitrary ones.

>>> r = BM25Retriever().index([{"id": "a", "text": "cats purr"}, {"id": "b", "text": "dogs bark"}])
>>> r.retrieve("a cat", k=1).ids
['a']
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from itertools import chain
from operator import itemgetter
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from rag.core.errors import ConfigError
from rag.core.nodes import BaseRetriever
from rag.core.types import Document, Query, ScoredBatch, ScoredIds
from rag.index.persist import atomic_write_text
from retrievers.bm25_segments import SegmentedBM25, build_segment
from retrievers.kernels import bm25 as kbm25
from retrievers.stores.exact import topk_rows
from retrievers.stores.filters import predicate

METHODS = ("lucene", "robertson", "atire", "bm25l", "bm25+")
# a batch this large (re)builds the segments' score matrix for the batched kernel; smaller ones
# right after a write score from the postings directly
BATCH_MATRIX = 8
LEGACY_METHODS = ("bm25l", "bm25+")  # a score for every non-matching document: bm25s rebuilds
FIELDS = ("title+text", "text")
_WORDS = re.compile(r"(?u)\b\w\w+\b")  # bm25s's (and scikit-learn's) token pattern
MAX_STEMS = 1_000_000  # words whose stems a retriever keeps between calls


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
        from bm25s.tokenization import _infer_stopwords

        self._stem = Stemmer.Stemmer(self.stemmer) if self.stemmer else None
        self._stopset = frozenset(_infer_stopwords(self.stopwords or []))
        self._stems: dict[str, str] = {}  # word -> stem, shared by all calls (bounded)

    def tokenize(self, texts: list[str]) -> list[list[str]]:
        """Lower-cased ``\\w\\w+`` words without stopwords, stemmed: the tokens of
        ``bm25s.tokenize(texts, stopwords, stemmer, return_ids=False)`` (scikit-learn's
        CountVectorizer rule), computed without its per-call vocabulary and with the stems of
        words already seen kept, so a batch of queries pays one regex pass per text and one
        stemmer call for its new words."""
        self.load()
        split, stop = _WORDS.findall, self._stopset
        words = [[w for w in split(t.lower()) if w not in stop] for t in texts]
        if self._stem is None:
            return words
        stems = self._stems
        new = {w for doc in words for w in doc if w not in stems}
        if new:
            if len(stems) > MAX_STEMS:
                stems = self._stems = {}
            new_words = list(new)
            stems.update(zip(new_words, self._stem.stemWords(new_words)))
        return [[stems[w] for w in doc] for doc in words]

    def query_ids(self, texts: list[str], index: Any) -> tuple[np.ndarray, np.ndarray]:
        """The vocabulary ids in ``index`` (a bm25s-layout matrix) of the texts' tokens, flat,
        and per-text offsets ``(B + 1,)``: what :meth:`tokenize` then
        :func:`retrievers.kernels.bm25.token_ids` give, through one cache of word -> id (``-1``
        for a stopword or a stem the index lacks) kept per index, so a batch costs one regex
        pass per text and one dict lookup per word (the stemmer runs on new words only)."""
        self.load()
        cached: tuple[Any, dict[str, int]] | None = getattr(self, "_word_ids", None)
        if cached is None or cached[0] is not index or len(cached[1]) > MAX_STEMS:
            cached = (index, {})
            self._word_ids = cached
        wid: dict[str, int] = cached[1]
        words = list(map(_WORDS.findall, map(str.lower, texts)))
        flat = list(chain.from_iterable(words))  # C-level loops from here on
        new = list(set(flat).difference(wid))
        if new:
            vocab, stop = index.vocab_dict, self._stopset
            for w, toks in zip(new, self.tokenize(new)):
                wid[w] = -1 if w in stop or not toks else vocab.get(toks[0], -1)
        every = np.fromiter(map(wid.__getitem__, flat), np.int64, len(flat))
        known = every >= 0
        kept = np.zeros(len(every) + 1, dtype=np.int64)  # known words before each position
        np.cumsum(known, out=kept[1:])
        ends = np.zeros(len(words) + 1, dtype=np.int64)  # each text's end among all words
        np.cumsum(np.fromiter(map(len, words), np.int64, len(words)), out=ends[1:])
        return every[known], kept[ends]

    def _text(self, d: Document) -> str:
        return d.full_text if self.fields == "title+text" else d.text

    @property
    def _segmented(self) -> bool:
        return self.method not in LEGACY_METHODS

    @property
    def _index(self) -> SegmentedBM25:
        if getattr(self, "_seg", None) is None:
            self._seg = SegmentedBM25(self.k1, self.b, self.method)
        return self._seg

    def _add(self, docs: list[Document]) -> None:
        if self._segmented:  # a new segment; statistics stay global, nothing is rebuilt
            tokens = self.tokenize([self._text(d) for d in docs])
            self._index.add(build_segment([d.id for d in docs], tokens))
        self._bm25 = None  # rebuilt on next search

    def _delete(self, ids: list[str]) -> None:
        if self._segmented:
            self._index.delete(ids)
        self._bm25 = None

    def compact(self) -> None:
        """Merge all segments into one and drop deleted documents."""
        if self._segmented:
            self._index.compact()

    def _build(self) -> None:
        import bm25s

        # built aside and published at the end: a concurrent search never sees a half-built index
        order = list(self.documents)
        bm25 = bm25s.BM25(k1=self.k1, b=self.b, method=self.method)
        tokens = self.tokenize([self._text(self.documents[i]) for i in order])
        # bm25s needs at least one token per corpus; an all-stopword corpus scores zero
        bm25.index(tokens if any(tokens) else [["\x00"]] * len(tokens), show_progress=False)
        self._order, self._bm25 = order, bm25

    def _row_scores(self, query: str) -> tuple[np.ndarray, list[str], np.ndarray | None]:
        """Scores ``(R,)`` of every row, the row ids, and the live-row mask (``None``: all)."""
        if self._segmented:
            idx = self._index
            live = idx._global()[0]
            return idx.row_scores(self.tokenize([query])[0]), idx.ids(), live
        if self._bm25 is None:
            self._build()
        vocab = self._bm25.vocab_dict
        toks = [t for t in self.tokenize([query])[0] if t in vocab]
        if not toks:
            return np.zeros(len(self._order), dtype=np.float32), self._order, None
        return np.asarray(self._bm25.get_scores(toks), dtype=np.float32), self._order, None

    def scores(self, query: str) -> np.ndarray:
        """BM25 score of every indexed document for ``query``, in ``documents`` order ``(N,)``."""
        s, _, live = self._row_scores(query)
        return s if live is None else s[live]

    def _search(
        self, queries: list[Query], k: int, filter: dict | None
    ) -> Sequence[ScoredIds]:
        if not self._segmented:  # bm25l / bm25+: one bm25s index, batched kernel
            if self._bm25 is None:
                self._build()
            allowed = None
            if filter:
                docs = self.documents
                match = predicate(filter)
                allowed = np.array([match(docs[i].metadata) for i in self._order])
            # one tokenizer call and one scoring pass for the batch (retrievers.kernels.bm25)
            ids = self.query_ids([q.text for q in queries], self._bm25)
            idx_b, vals_b = kbm25.topk(self._bm25, ids, k, allowed, nonzero=True)
            return _scored(self._order, idx_b, vals_b)
        seg = self._index
        if len(queries) < BATCH_MATRIX and not seg.matrix_fresh():
            return self._search_rows(queries, k, filter)
        # segments: their live postings with precomputed term scores (rebuilt after a write in
        # O(postings), ~80 ms for SciFact, no re-tokenizing), scanned by the batched kernel;
        # sums are bit-identical to row_scores', so both paths rank the same
        order, allowed = seg.ids(), np.array(seg._global()[0], dtype=bool)
        if filter:
            docs = self.documents
            match = predicate(filter)
            allowed &= np.array([i in docs and match(docs[i].metadata) for i in order], dtype=bool)
        matrix = seg.matrix()
        ids = self.query_ids([q.text for q in queries], matrix)
        idx_b, vals_b = kbm25.topk(matrix, ids, k, allowed, nonzero=True)
        return _scored(order, idx_b, vals_b)

    def _search_rows(self, queries: list[Query], k: int, filter: dict | None) -> list[ScoredIds]:
        """Per query from the segments' postings: right after a write, a few queries cost less
        this way than rebuilding the kernel's score matrix (a server's single searches)."""
        out: list[ScoredIds] = []
        mask = None
        for q in queries:
            s, order, live = self._row_scores(q.text)
            if filter and mask is None:
                docs = self.documents
                match = predicate(filter)
                mask = np.array([i in docs and match(docs[i].metadata) for i in order], dtype=bool)
            s = np.where(s != 0, s, -np.inf)  # matching-only, as the kernel path
            if live is not None:
                s = np.where(live, s, -np.inf)
            if mask is not None:
                s = np.where(mask, s, -np.inf)
            idx, vals = topk_rows(s[None, :], k)
            out.extend(_scored(order, idx, vals))
        return out

    # -- persistence: segments are appended, never rewritten (rag.index) ------------------------
    def _commit_state(self, commit: Any, part: str) -> dict[str, Any]:
        if not self._segmented:
            return super()._commit_state(commit, part)
        return {"bm25": self._index.commit(commit, part)}

    def _open_state(self, folder: Path, state: dict[str, Any]) -> None:
        if "bm25" not in state:
            return super()._open_state(folder, state)
        self.load()
        self._index.open(folder, state["bm25"])

    def _save_state(self, path: Path) -> None:
        if self._segmented:
            return
        if self._bm25 is None and self.documents:
            self._build()
        if self._bm25 is not None:
            self._bm25.save(str(path / "bm25"), show_progress=False)
            atomic_write_text(path / "bm25" / "order.json", json.dumps(self._order))

    def _load_state(self, path: Path) -> None:
        import bm25s

        if self._segmented or not (path / "bm25" / "order.json").exists():
            return super()._load_state(path)  # re-index the saved documents
        self.load()
        self._order = json.loads((path / "bm25" / "order.json").read_text(encoding="utf-8"))
        self._bm25 = bm25s.BM25.load(str(path / "bm25"), mmap=True, show_progress=False)


def _scored(order: list[str], idx: np.ndarray, vals: np.ndarray) -> ScoredBatch:
    """Per query row of the kernel's ``(B, k)`` rows and scores: the ids and scores of the
    documents that match at least one query term (a finite, non-zero BM25 sum; padding a
    ranking with zero-score documents hands the generator noise as context). Stays flat arrays
    (:class:`~rag.core.types.ScoredBatch`); the ids of the whole batch are looked up in one
    C-level call."""
    keep = np.isfinite(vals) & (vals != 0)
    rows = idx[keep].tolist()  # row-major: query by query, in rank order
    names = list(itemgetter(*rows)(order)) if len(rows) > 1 else [order[j] for j in rows]
    return ScoredBatch(names, vals[keep], np.cumsum(keep.sum(axis=1)).tolist())
