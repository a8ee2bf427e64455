"""Pseudo-relevance feedback: RM3 over BM25, and Rocchio over dense embeddings.

**RM3** (Lavrenko & Croft, "Relevance-Based Language Models", SIGIR 2001; the RM3 interpolation of
Abdul-Jaleel et al., TREC 2004, as implemented by Anserini's ``Rm3Reranker``, Yang, Fang & Lin,
SIGIR 2017). A first BM25 pass ranks the corpus; its top ``fb_docs`` documents ``R`` give the
relevance model::

    P(t | R) ∝ sum_{d in R} s(d) * tf(t, d) / |d|           (s(d): the first-pass BM25 score)

restricted to the ``fb_terms`` most probable terms (Anserini's filter: 2-20 alphanumeric
characters, document frequency at most ``max_df`` of the corpus) and L1-normalised. The expanded
query mixes it with the L1-normalised original query ``Q``::

    w(t) = original_query_weight * Q(t) + (1 - original_query_weight) * P(t | R)
    score(d) = sum_t w(t) * bm25(t, d)

Anserini's defaults are ``fb_docs=10, fb_terms=10, original_query_weight=0.5``. With
``original_query_weight=1`` the scores are BM25's exactly.

**Rocchio on embeddings** (Rocchio, "Relevance feedback in information retrieval", 1971; applied to
dense retrievers as Vector-PRF by Li et al., "Pseudo Relevance Feedback with Deep Language Models
and Dense Retrievers: Successes and Pitfalls", ACM TOIS 2023)::

    q' = alpha * q + beta * mean_{d in R} v(d),   searched after L2 normalisation,

with ``R`` the first dense pass's top ``fb_docs``. Li et al. found ``fb_docs`` 3-5 best, and
``beta=0`` gives the plain dense retriever.

>>> docs = [{"id": "a", "text": "cats purr softly"}, {"id": "b", "text": "dogs bark loudly"}]
>>> RM3Retriever(fb_docs=1).index(docs).retrieve("cats", k=1).ids
['a']
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from rag.errors import ConfigError
from rag.index.io import write_index
from rag.nodes import BaseRetriever
from rag.types import Document, Query
from retrievers.bm25 import BM25Retriever
from retrievers.dense import DenseRetriever
from retrievers.stores.exact import topk_rows
from retrievers.stores.filters import predicate

_TERM = re.compile(r"^[a-z0-9]{2,20}$")


def _check_count(name: str, v: Any) -> None:
    if isinstance(v, bool) or not isinstance(v, int) or v < 1:
        raise ConfigError(f"{name} must be an int >= 1, got {v!r}")


def _index_unless_held(inner: BaseRetriever, docs: list[Document]) -> None:
    """Index ``docs`` into ``inner`` unless it already holds exactly them (an index shared with
    a sibling in :class:`~retrievers.rerank_fusion.RerankFusionRetriever`, indexed first)."""
    held = inner.documents
    if not all(held.get(d.id) == d for d in docs):
        inner.index(docs)


def _top(scores: np.ndarray, order: list[str], k: int, mask: np.ndarray | None):  # type: ignore[no-untyped-def]
    s = np.where(mask, scores, -np.inf) if mask is not None else scores
    idx, vals = topk_rows(s[None, :], k)
    # only documents with a non-zero score (a term of the expanded query): no zero-score padding
    return [(order[j], float(v)) for j, v in zip(idx[0], vals[0]) if np.isfinite(v) and v != 0]


class RM3Retriever(BaseRetriever):
    matching_only: ClassVar[bool] = True  # BM25 over the expanded query

    """BM25 with RM3 query expansion (see the module docstring).

    Args:
        bm25: the :class:`BM25Retriever` (default settings when ``None``).
        fb_docs: feedback documents from the first pass.
        fb_terms: expansion terms kept.
        original_query_weight: weight of the original query in the mix, in ``[0, 1]``.
        max_df: terms in more than this fraction of documents are not expansion terms.
    """

    name: ClassVar[str] = "bm25_rm3"

    def __init__(
        self,
        bm25: BM25Retriever | None = None,
        fb_docs: int = 10,
        fb_terms: int = 10,
        original_query_weight: float = 0.5,
        max_df: float = 0.1,
    ) -> None:
        _check_count("fb_docs", fb_docs)
        _check_count("fb_terms", fb_terms)
        if not 0 <= original_query_weight <= 1:
            raise ConfigError(
                f"original_query_weight must be in [0, 1], got {original_query_weight}"
            )
        if not 0 < max_df <= 1:
            raise ConfigError(f"max_df must be in (0, 1], got {max_df}")
        self.bm25 = bm25 if bm25 is not None else BM25Retriever()
        if not isinstance(self.bm25, BM25Retriever):
            raise ConfigError(f"bm25 must be a BM25Retriever, got {type(bm25).__name__}")
        self.fb_docs = fb_docs
        self.fb_terms = fb_terms
        self.original_query_weight = original_query_weight
        self.max_df = max_df
        self._tf: dict[str, tuple[Counter[str], int]] = {}

    def _load(self) -> None:
        self.bm25.load()

    def _add(self, docs: list[Document]) -> None:
        _index_unless_held(self.bm25, docs)
        for d in docs:
            self._tf.pop(d.id, None)

    def _delete(self, ids: list[str]) -> None:
        self.bm25.delete(ids)
        for i in ids:
            self._tf.pop(i, None)

    def _term_counts(self, doc_id: str) -> tuple[Counter[str], int]:
        """``(tf, |d|)`` of a document under the BM25 analyser (cached)."""
        if doc_id not in self._tf:
            toks = self.bm25.tokenize([self.bm25._text(self.documents[doc_id])])[0]
            self._tf[doc_id] = (Counter(toks), len(toks))
        return self._tf[doc_id]

    def expansion(self, query: str) -> dict[str, float]:
        """The expanded query ``{term: w(t)}`` (empty when no query term is in the index)."""
        bm = self.bm25
        first = bm.scores(query)
        vocab = bm._bm25.vocab_dict
        q_toks = [t for t in bm.tokenize([query])[0] if t in vocab]
        if not q_toks:
            return {}
        w0 = self.original_query_weight
        weights = {t: w0 * c / len(q_toks) for t, c in Counter(q_toks).items()}
        if w0 == 1:
            return weights
        top = [(bm._order[j], float(v)) for j, v in zip(*_first(first, self.fb_docs)) if v > 0]
        rel: dict[str, float] = {}
        for doc_id, s in top:
            tf, n = self._term_counts(doc_id)
            for t, c in tf.items():
                rel[t] = rel.get(t, 0.0) + s * c / max(n, 1)
        indptr = bm._bm25.scores["indptr"]
        n_docs = max(len(bm._order), 1)
        kept = []
        for t, p in sorted(rel.items(), key=lambda x: (-x[1], x[0])):
            tid = vocab.get(t)
            if tid is None or not _TERM.match(t):
                continue
            if (indptr[tid + 1] - indptr[tid]) / n_docs > self.max_df:
                continue
            kept.append((t, p))
            if len(kept) == self.fb_terms:
                break
        total = sum(p for _, p in kept)
        for t, p in kept:
            weights[t] = weights.get(t, 0.0) + (1 - w0) * p / total
        return weights

    def scores(self, query: str) -> np.ndarray:
        """RM3 score of every indexed document, in ``bm25._order`` ``(N,)``."""
        bm = self.bm25
        if bm._bm25 is None:
            bm._build()
        if self.original_query_weight == 1:
            return bm.scores(query)  # the expanded query is the original one: BM25 exactly
        weights = self.expansion(query)
        out = np.zeros(len(bm._order), dtype=np.float64)
        sc = bm._bm25.scores
        vocab = bm._bm25.vocab_dict
        for t, w in weights.items():
            tid = vocab[t]
            a, b = sc["indptr"][tid], sc["indptr"][tid + 1]
            np.add.at(out, sc["indices"][a:b], w * sc["data"][a:b])
        return out.astype(np.float32)

    def _search(
        self, queries: list[Query], k: int, filter: dict | None
    ) -> list[list[tuple[str, float]]]:
        bm = self.bm25
        if bm._bm25 is None:
            bm._build()
        mask = None
        if filter:
            match = predicate(filter)
            mask = np.array([match(self.documents[i].metadata) for i in bm._order])
        return [_top(self.scores(q.text), bm._order, k, mask) for q in queries]

    def _save_state(self, path: Path) -> None:
        write_index(self.bm25, path / "bm25")

    def _load_state(self, path: Path) -> None:
        from rag.persist import load_retriever

        if not (path / "bm25" / "config.json").exists():
            return super()._load_state(path)
        self.bm25 = load_retriever(path / "bm25")  # type: ignore[assignment]
        self._tf = {}


def _first(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    idx, vals = topk_rows(scores[None, :], k)
    return idx[0], vals[0]


def rocchio(
    q: np.ndarray,
    store: Any,
    fb_docs: int,
    alpha: float,
    beta: float,
    filter: dict | None = None,
) -> np.ndarray:
    """Rocchio vectors ``(B, D)`` of query vectors ``q`` ``(B, D)`` against ``store``'s first-pass
    top ``fb_docs``: ``alpha * q + beta * mean(top vectors)``, L2-normalised (``beta=0``: ``q``)."""
    if beta == 0:
        return q
    first = store.search(q, fb_docs, filter)
    out = alpha * q
    for i, hits in enumerate(first):
        if hits:
            out[i] += beta * store.vectors([h for h, _ in hits]).mean(axis=0)
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    return np.asarray(out / np.where(norms == 0, 1, norms), dtype=np.float32)


class DensePRFRetriever(BaseRetriever):
    """Dense retrieval with Rocchio feedback on the embeddings (see the module docstring).

    Args:
        dense: the :class:`DenseRetriever` (its store must offer ``vectors(ids)``, as
            ``ExactStore`` does).
        fb_docs: feedback documents from the first dense pass.
        alpha, beta: Rocchio weights of the query and of the feedback centroid.
    """

    name: ClassVar[str] = "dense_prf"

    def __init__(
        self,
        dense: DenseRetriever | None = None,
        fb_docs: int = 3,
        alpha: float = 1.0,
        beta: float = 0.5,
    ) -> None:
        _check_count("fb_docs", fb_docs)
        if alpha < 0 or beta < 0 or alpha + beta == 0:
            raise ConfigError(f"need alpha, beta >= 0, not both 0; got {alpha}, {beta}")
        self.dense = dense if dense is not None else DenseRetriever()
        if not isinstance(self.dense, DenseRetriever):
            raise ConfigError(f"dense must be a DenseRetriever, got {type(dense).__name__}")
        if not hasattr(self.dense.store, "vectors"):
            raise ConfigError(
                f"dense_prf needs a store that returns vectors (ExactStore), got "
                f"{type(self.dense.store).__name__}"
            )
        self.fb_docs = fb_docs
        self.alpha = alpha
        self.beta = beta

    @property
    def uses_instruction(self) -> bool:  # type: ignore[override]
        return self.dense.uses_instruction

    def _load(self) -> None:
        self.dense.load()

    def _add(self, docs: list[Document]) -> None:
        _index_unless_held(self.dense, docs)

    def _delete(self, ids: list[str]) -> None:
        self.dense.delete(ids)

    def query_vectors(self, queries: list[Query], filter: dict | None = None) -> np.ndarray:
        """Rocchio query vectors ``(B, D)``, L2-normalised."""
        d = self.dense
        q = np.asarray(d.encoder.encode([d.query_text(x) for x in queries], kind="query"))
        q = q.astype(np.float32)
        return rocchio(q, d.store, self.fb_docs, self.alpha, self.beta, filter)

    def _search(
        self, queries: list[Query], k: int, filter: dict | None
    ) -> list[list[tuple[str, float]]]:
        return self.dense.store.search(self.query_vectors(queries, filter), k, filter)  # type: ignore[no-any-return]

    def _save_state(self, path: Path) -> None:
        write_index(self.dense, path / "dense")

    def _load_state(self, path: Path) -> None:
        from rag.persist import load_retriever

        if not (path / "dense" / "config.json").exists():
            return super()._load_state(path)
        self.dense = load_retriever(path / "dense")  # type: ignore[assignment]
