"""ANNCUR: k-NN search with an expensive scorer by CUR decomposition of its score matrix.

Yadav, Monath, Angell, Zaheer & McCallum, "Efficient Nearest Neighbor Search for Cross-Encoder
Models using Matrix Factorization", EMNLP 2022 (arXiv:2210.12579).

A cross-encoder (or any scorer: MiniLM late interaction, an LLM pointwise judge) has no item
embeddings, so it cannot be indexed. ANNCUR builds them from the scorer's own scores:

* **Offline** (``index``): score ``k_q`` *anchor queries* against every item,
  ``R_anc = S(Q_anc, I)`` of shape ``(k_q, N)``. Anchor queries are training queries
  (``anchor_queries``) or, zero-shot, pseudo-queries cut from the corpus itself.
* **Query time**: score the test query against ``k_i`` *anchor items* only,
  ``c = S(q, I_anc)`` ``(k_i,)``; approximate its scores on all items by CUR,

      s_hat = c @ pinv(R_anc[:, I_anc]) @ R_anc        # (N,)

  (for fixed anchor items, ``E = pinv(R_anc[:, I_anc]) @ R_anc`` ``(k_i, N)`` are the item
  embeddings and ``c`` the query embedding, so retrieval is one matrix-vector product);
  take the ``budget - k_i`` best non-anchor items by ``s_hat`` and re-score them exactly.
  The anchor items' exact scores are kept too, so every one of the ``budget`` scorer calls
  counts in the final ranking (the paper's total "CE call" budget split between anchor items and
  re-ranking).
* Anchor items are ``"random"`` (uniform, fixed per index: ANNCUR_rand) or ``"first_stage"``
  (the top ``k_i`` of a cheap retriever for this query, e.g. TF-IDF/BM25 or a dual encoder: the
  paper's query-dependent anchors; the pseudo-inverse is then computed per query).

Ranking returned: the ``budget`` exactly scored items by exact score, then (only when ``k`` asks
for more) the remaining items in CUR order, their approximate scores shifted to lie below the
lowest exact score. Each output's ``Ranking.provenance["scorer_calls"]`` holds its query's scorer
calls.

>>> r = AnnCurRetriever(n_anchor_items=50, budget=100)    # MiniLM late interaction as scorer
>>> r.index(docs).retrieve("what is bm25", k=10)          # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from rag.errors import ConfigError, DataError
from rag.index.files import write_array
from rag.nodes import BaseRetriever, check_query
from rag.persist import atomic_write_text
from rag.types import Document, Query, Ranking

ANCHOR_ITEMS = ("random", "first_stage")


def cur_scores(anchor_scores: np.ndarray, r_anc: np.ndarray, anchor_idx: np.ndarray) -> np.ndarray:
    """CUR approximation of a query's scores on all items (Yadav et al. 2022, eq. 3).

    ``anchor_scores (B, k_i)`` or ``(k_i,)``: exact scores of the query against the anchor items;
    ``r_anc (k_q, N)``: exact scores of the anchor queries against every item;
    ``anchor_idx (k_i,)``: the anchor items' columns. Returns ``(B, N)`` (or ``(N,)``):
    ``anchor_scores @ pinv(r_anc[:, anchor_idx]) @ r_anc``, computed in float64.

    When every item is an anchor and ``r_anc`` has full column rank, ``pinv(R) @ R = I`` and the
    result equals ``anchor_scores`` exactly.
    """
    r = np.asarray(r_anc, dtype=np.float64)
    u = np.linalg.pinv(r[:, np.asarray(anchor_idx)])  # (k_i, k_q)
    return np.asarray(anchor_scores, dtype=np.float64) @ (u @ r)


def _check_int(name: str, v: Any, low: int) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v < low:
        raise ConfigError(f"{name} must be an int >= {low}, got {v!r}")
    return v


class AnnCurRetriever(BaseRetriever):
    """Retrieve with any reranker's own scores, under a fixed per-query scorer-call budget.

    Args:
        scorer: any reranker node (default: MiniLM late interaction, ``LateInteractionReranker``);
            it must score every document it is given (no threshold).
        anchor_queries: texts of the anchor queries (training queries, never test queries);
            ``None`` cuts ``n_anchor_queries`` pseudo-queries from the indexed documents.
        n_anchor_queries: ``k_q`` when ``anchor_queries`` is None.
        pseudo_query_words: words per corpus pseudo-query.
        n_anchor_items: ``k_i``, scorer calls per query spent on anchor items.
        budget: total scorer calls per query (``k_i`` anchors + ``budget - k_i`` re-scored).
        anchor_items: ``"random"`` or ``"first_stage"`` (needs ``first_stage``).
        first_stage: a retriever node that picks query-dependent anchor items; indexed with the
            same documents by this node.
        anchor_matrix: path of an ``.npy`` written by :meth:`save_anchor_matrix` (with its
            ``.json`` sidecar): columns of documents found there are reused, not re-scored.
        seed: seed of the random anchor items and of the pseudo-queries.
    """

    name: ClassVar[str] = "anncur"
    supports_filter: ClassVar[bool] = False  # the CUR matrix spans the whole corpus

    def __init__(
        self,
        scorer: Any = None,
        anchor_queries: Sequence[str] | None = None,
        n_anchor_queries: int = 100,
        pseudo_query_words: int = 24,
        n_anchor_items: int = 50,
        budget: int = 100,
        anchor_items: str = "random",
        first_stage: Any = None,
        anchor_matrix: str | None = None,
        seed: int = 0,
    ) -> None:
        from rag.nodes import BaseReranker, Node

        if scorer is None:  # by registry name: rerankers sit beside retrievers, never imported
            scorer = Node.from_config({"type": "late_interaction"})
        if not isinstance(scorer, BaseReranker):
            raise ConfigError(f"scorer must be a reranker node, got {type(scorer).__name__}")
        if getattr(scorer, "threshold", None) is not None:
            raise ConfigError("scorer must score every document: set its threshold to None")
        if anchor_items not in ANCHOR_ITEMS:
            raise ConfigError(f"anchor_items must be one of {ANCHOR_ITEMS}, got {anchor_items!r}")
        if anchor_items == "first_stage" and not isinstance(first_stage, BaseRetriever):
            raise ConfigError("anchor_items='first_stage' needs a first_stage retriever node")
        if first_stage is not None and not isinstance(first_stage, BaseRetriever):
            raise ConfigError(f"first_stage must be a retriever node, got {first_stage!r}")
        if anchor_queries is not None:
            if isinstance(anchor_queries, str) or not all(
                isinstance(t, str) and t.strip() for t in anchor_queries
            ):
                raise ConfigError("anchor_queries must be a list of non-empty strings or None")
            if not anchor_queries:
                raise ConfigError("anchor_queries is empty; pass at least one query or None")
        _check_int("n_anchor_queries", n_anchor_queries, 1)
        _check_int("pseudo_query_words", pseudo_query_words, 1)
        _check_int("n_anchor_items", n_anchor_items, 1)
        _check_int("budget", budget, 1)
        if budget < n_anchor_items:
            raise ConfigError(
                f"budget ({budget}) must be >= n_anchor_items ({n_anchor_items}): the anchor "
                "items are part of the scorer-call budget"
            )
        self.scorer = scorer
        self.anchor_queries = list(anchor_queries) if anchor_queries is not None else None
        self.n_anchor_queries = n_anchor_queries
        self.pseudo_query_words = pseudo_query_words
        self.n_anchor_items = n_anchor_items
        self.budget = budget
        self.anchor_items = anchor_items
        self.first_stage = first_stage
        self.anchor_matrix = str(anchor_matrix) if anchor_matrix is not None else None
        self.seed = seed
        self._items: list[str] = []
        self._r = np.zeros((0, 0), dtype=np.float32)
        self._anchors: list[str] | None = None
        self._latent: tuple[np.ndarray, np.ndarray] | None = None

    # -- scorer -----------------------------------------------------------------------------------
    def _score(self, query: Query, docs: list[Document]) -> np.ndarray:
        """Exact scorer scores ``(len(docs),)``: one scorer call per document."""
        if not docs:
            return np.zeros(0, dtype=np.float64)
        out = self.scorer.rerank(Ranking.from_scored(query, ((d, 0.0) for d in docs)))
        got = {h.id: h.score for h in out.hits}
        missing = [d.id for d in docs if d.id not in got]
        if missing:
            raise ConfigError(
                f"scorer {self.scorer.name!r} dropped {len(missing)} documents (e.g. "
                f"{missing[0]!r}); ANNCUR needs a score for every document"
            )
        return np.array([got[d.id] for d in docs], dtype=np.float64)

    # -- anchors and the offline matrix ----------------------------------------------------------
    def _pseudo_queries(self, docs: list[Document]) -> list[str]:
        """Zero-shot anchor queries: ``pseudo_query_words``-word windows of random documents."""
        rng = np.random.default_rng(self.seed)
        out = []
        for j in rng.integers(0, len(docs), size=self.n_anchor_queries):
            words = docs[int(j)].full_text.split()
            start = int(rng.integers(0, max(1, len(words) - self.pseudo_query_words + 1)))
            out.append(" ".join(words[start : start + self.pseudo_query_words]) or docs[int(j)].id)
        return out

    def _stored_columns(self) -> dict[str, np.ndarray]:
        """Columns of ``anchor_matrix`` by document id (empty when unset)."""
        if self.anchor_matrix is None:
            return {}
        mat, meta = read_anchor_matrix(self.anchor_matrix)
        if self._anchors is None:
            self._anchors = list(meta["anchor_queries"])
        if meta["anchor_queries"] != self._anchors:
            raise ConfigError(
                f"{self.anchor_matrix}: its anchor queries differ from this node's; rebuild it"
            )
        return {i: mat[:, c] for c, i in enumerate(meta["item_ids"])}

    def _add(self, docs: list[Document]) -> None:
        if self._anchors is None and self.anchor_queries is not None:
            self._anchors = list(self.anchor_queries)
        stored = self._stored_columns()
        if self._anchors is None:
            self._anchors = self._pseudo_queries(docs)
        cols = np.zeros((len(self._anchors), len(docs)), dtype=np.float32)
        todo = [j for j, d in enumerate(docs) if d.id not in stored]
        for j, d in enumerate(docs):
            if d.id in stored:
                cols[:, j] = stored[d.id]
        if todo:
            fresh = [docs[j] for j in todo]
            for a, text in enumerate(self._anchors):
                cols[a, todo] = self._score(Query(id=f"anchor{a}", text=text), fresh)
        self._r = cols if not self._items else np.concatenate([self._r, cols], axis=1)
        self._items.extend(d.id for d in docs)
        self._latent = None
        if self.first_stage is not None:
            self.first_stage.index(docs)

    def _delete(self, ids: list[str]) -> None:
        gone = set(ids)
        keep = [c for c, i in enumerate(self._items) if i not in gone]
        self._r = self._r[:, keep]
        self._items = [self._items[c] for c in keep]
        self._latent = None
        if self.first_stage is not None:
            self.first_stage.delete(ids)

    # -- query time -------------------------------------------------------------------------------
    def _random_anchors(self) -> tuple[np.ndarray, np.ndarray]:
        """Fixed random anchor items and their item embeddings ``pinv(R[:, I]) @ R (k_i, N)``."""
        if self._latent is None:
            n = len(self._items)
            rng = np.random.default_rng(self.seed)
            idx = np.sort(rng.choice(n, size=min(self.n_anchor_items, n), replace=False))
            r = self._r.astype(np.float64)
            self._latent = (idx, np.linalg.pinv(r[:, idx]) @ r)
        return self._latent

    def _first_stage_anchors(self, query: Query) -> np.ndarray:
        k_i = min(self.n_anchor_items, len(self._items))
        col = {i: c for c, i in enumerate(self._items)}
        first = self.first_stage
        if first is None:
            raise ConfigError("anchor items from a first stage need first_stage= (a retriever)")
        got = [col[i] for i in first._retrieve([query], k_i, None)[0].ids if i in col]
        if len(got) < k_i:  # a first stage that returns fewer items: fill at random
            rest = np.setdiff1d(np.arange(len(self._items)), got)
            rng = np.random.default_rng(self.seed)
            got += rng.choice(rest, size=k_i - len(got), replace=False).tolist()
        return np.array(got[:k_i], dtype=np.int64)

    def approximate(self, query: Query | str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(anchor_idx (k_i,), exact anchor scores (k_i,), s_hat (N,))`` for one query, items in
        index order (:attr:`item_ids`). Costs ``k_i`` scorer calls."""
        return self._approximate(check_query(query))

    def _approximate(self, q: Query) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        self.load()
        if not self._items:
            raise ConfigError("AnnCurRetriever has no documents; call index() first")
        if self.anchor_items == "random":
            idx, latent = self._random_anchors()
            c = self._score(q, [self.documents[self._items[j]] for j in idx])
            return idx, c, c @ latent
        idx = self._first_stage_anchors(q)
        c = self._score(q, [self.documents[self._items[j]] for j in idx])
        return idx, c, cur_scores(c, self._r, idx)

    @property
    def item_ids(self) -> list[str]:
        return list(self._items)

    def _search(
        self, queries: list[Query], k: int, filter: dict | None
    ) -> list[list[tuple[str, float]]]:
        results = []
        for qi, q in enumerate(queries):
            idx, exact_anchor, s_hat = self._approximate(q)
            n = len(self._items)
            order = np.argsort(-s_hat, kind="stable")
            is_anchor = np.zeros(n, dtype=bool)
            is_anchor[idx] = True
            rest = order[~is_anchor[order]]
            n_rescore = min(self.budget - len(idx), len(rest))
            cand, tail = rest[:n_rescore], rest[n_rescore:]
            exact_cand = self._score(q, [self.documents[self._items[j]] for j in cand])
            self.record(qi)["scorer_calls"] = len(idx) + len(cand)
            exact = [(self._items[j], float(s)) for j, s in zip(idx, exact_anchor, strict=True)]
            exact += [(self._items[j], float(s)) for j, s in zip(cand, exact_cand, strict=True)]
            out = sorted(exact, key=lambda x: (-x[1], x[0]))[:k]
            if len(out) < k and len(tail):
                tail = tail[: k - len(out)]
                floor = min(s for _, s in exact)
                shift = float(s_hat[tail[0]]) - floor + 1e-3 * (1.0 + abs(floor))
                out += [(self._items[j], float(s_hat[j]) - shift) for j in tail]
            results.append(out)
        return results

    # -- persistence ------------------------------------------------------------------------------
    def save_anchor_matrix(self, path: str | os.PathLike[str]) -> Path:
        """Write ``R_anc`` to ``path`` (``.npy``, float32, ``(k_q, N)``) and a ``.json`` sidecar
        with the anchor queries and the item ids of its columns."""
        return write_anchor_matrix(path, self._r, self._items, self._anchors or [])

    def _save_state(self, path: Path) -> None:
        write_anchor_matrix(path / "anchor_matrix.npy", self._r, self._items, self._anchors or [])

    def _load_state(self, path: Path) -> None:
        mat, meta = read_anchor_matrix(path / "anchor_matrix.npy")
        if set(meta["item_ids"]) != set(self.documents):
            raise DataError(f"{path}: anchor_matrix.npy columns do not match documents.jsonl")
        self._r = np.array(mat, dtype=np.float32)
        self._items = list(meta["item_ids"])
        self._anchors = list(meta["anchor_queries"])
        self._latent = None
        if self.first_stage is not None:  # the first stage is cheap next to the scorer: rebuild
            self.first_stage.index([self.documents[i] for i in self._items])


def write_anchor_matrix(
    path: str | os.PathLike[str],
    matrix: np.ndarray,
    item_ids: Sequence[str],
    anchors: Sequence[str],
) -> Path:
    """Atomically write ``matrix (k_q, N)`` to ``path`` and ``{anchor_queries, item_ids}`` to
    ``path`` with suffix ``.json``."""
    p = Path(path)
    m = np.asarray(matrix, dtype=np.float32)
    if m.shape != (len(anchors), len(item_ids)):
        raise ConfigError(f"matrix shape {m.shape} != ({len(anchors)}, {len(item_ids)})")
    p.parent.mkdir(parents=True, exist_ok=True)
    write_array(p, m)  # the one writer (rag.index.files): temp, fsync, rename
    meta = {"anchor_queries": list(anchors), "item_ids": list(item_ids)}
    atomic_write_text(p.with_suffix(".json"), json.dumps(meta))
    return p


def read_anchor_matrix(path: str | os.PathLike[str]) -> tuple[np.ndarray, dict[str, Any]]:
    """``(matrix (k_q, N) memory map, {anchor_queries, item_ids})`` written by
    :func:`write_anchor_matrix`."""
    p = Path(path)
    side = p.with_suffix(".json")
    if not p.exists() or not side.exists():
        raise DataError(f"anchor matrix {str(p)!r} or its sidecar {side.name!r} does not exist")
    mat = np.load(p, mmap_mode="r", allow_pickle=False)
    meta = json.loads(side.read_text(encoding="utf-8"))
    if mat.shape != (len(meta["anchor_queries"]), len(meta["item_ids"])):
        raise DataError(f"{p}: shape {mat.shape} does not match its sidecar {side.name}")
    return mat, meta


__all__ = ["AnnCurRetriever", "cur_scores", "read_anchor_matrix", "write_anchor_matrix"]
