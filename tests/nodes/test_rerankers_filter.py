"""Relevance filter (calibrated per-query mapping, global cut, adaptive top-k) and cascade."""

from __future__ import annotations

import numpy as np
import pytest

from rag.core.nodes import Node
from rag.core.types import Document, Query, Ranking
from rerankers import RelevanceFilter, set_quality


def synthetic(n_queries: int, seed: int) -> tuple[list[Ranking], dict[str, dict[str, int]]]:
    """Per-query score offsets differ wildly (raw scores do not compare across queries); the
    relevant documents sit 2 standard deviations above their query's mean."""
    rng = np.random.default_rng(seed)
    rankings, qrels = [], {}
    for q in range(n_queries):
        offset, scale = rng.normal(0, 5), rng.uniform(0.5, 3)
        rel = rng.integers(1, 4)
        scores = np.r_[rng.normal(2, 0.5, rel), rng.normal(0, 0.5, 30)] * scale + offset
        docs = [Document(id=f"q{q}d{i}", text="x") for i in range(len(scores))]
        rankings.append(
            Ranking.from_scored(Query(text="t", id=f"q{q}"), zip(docs, scores, strict=True))
        )
        qrels[f"q{q}"] = {f"q{q}d{i}": 1 for i in range(rel)}
    return rankings, qrels


def test_fitted_filter_beats_a_raw_global_threshold() -> None:
    train, train_qrels = synthetic(200, 0)
    test, test_qrels = synthetic(200, 1)
    f = RelevanceFilter().fit(train, train_qrels)
    assert 0.0 < f.threshold < 1.0 and all(w >= 0 for w in f.weights[:3])
    quality = set_quality(f.rerank_batch(test), test_qrels)
    assert quality["f1"] > 0.8
    # the best single raw-score threshold on test itself is worse: offsets differ per query
    best_raw = max(
        set_quality(
            [r.model_copy(update={"hits": tuple(h for h in r.hits if h.score >= t)}) for r in test],
            test_qrels,
        )["f1"]
        for t in np.linspace(-15, 15, 121)
    )
    assert quality["f1"] > best_raw


def test_target_precision_and_adaptive_k() -> None:
    train, qrels = synthetic(100, 2)
    strict = RelevanceFilter().fit(train, qrels, target_precision=0.95)
    loose = RelevanceFilter().fit(train, qrels)
    assert strict.threshold >= loose.threshold
    assert set_quality(strict.rerank_batch(train), qrels)["precision"] >= 0.95
    capped = RelevanceFilter(weights=loose.weights, threshold=loose.threshold, max_k=1)
    assert all(len(r) <= 1 for r in capped.rerank_batch(train))
    keep_two = RelevanceFilter(weights=loose.weights, threshold=1.0, min_k=2)
    assert all(len(r) == 2 for r in keep_two.rerank_batch(train))


def test_filter_keeps_order_and_round_trips() -> None:
    train, qrels = synthetic(50, 3)
    f = RelevanceFilter().fit(train, qrels)
    for r, out in zip(train, f.rerank_batch(train), strict=True):
        assert out.ids == r.ids[: len(out)]  # monotone mapping: a prefix of the input order
        assert all(0 <= s <= 1 for s in out.scores)
    again = Node.from_config(f.to_config())
    assert again == f
    assert again.rerank_batch(train) == f.rerank_batch(train)


def test_fit_without_relevant_hits_fails_clearly() -> None:
    train, _ = synthetic(3, 4)
    with pytest.raises(ValueError, match="at least one relevant"):
        RelevanceFilter().fit(train, {r.query.id: {"nope": 1} for r in train})


def test_cascade_narrows_stage_by_stage() -> None:
    from rerankers import CascadeReranker

    class ByLength(RelevanceFilter):  # a deterministic stand-in stage: longer text scores higher
        def rerank_batch(self, rankings, k=None):
            return [
                Ranking.from_scored(
                    r.query, ((h.document, len(h.document.text)) for h in r.hits), k, "by_length"
                )
                for r in rankings
            ]

    docs = [Document(id=f"d{i}", text="x" * (i + 1)) for i in range(10)]
    r = Ranking.from_scored(Query(text="q"), ((d, 0.0) for d in docs))
    out = CascadeReranker([(ByLength(), 5), (RelevanceFilter(threshold=0.0), 2)]).rerank(r)
    assert out.ids == ["d9", "d8"] and out.stage == "cascade[by_length>relevance_filter]"
