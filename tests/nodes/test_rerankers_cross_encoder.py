"""CrossEncoderReranker equals sentence-transformers CrossEncoder.predict on a tiny checkpoint.

No real cross-encoder weights exist offline, so the test builds a 2-layer BERT classifier from a
config (random weights, fixed seed) with the packaged MiniLM tokenizer and saves it to tmp_path.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
st_ce = pytest.importorskip("sentence_transformers.cross_encoder")

from rag.core.types import Document, Query, Ranking  # noqa: E402
from rerankers import CrossEncoderReranker  # noqa: E402

QUERY = "what limits the speed of mechanized document retrieval"
TEXTS = [
    "Mechanized retrieval is limited by the speed of magnetic tape searching.",
    "A short text.",
    "Library cataloguing rules " * 80,  # longer than max_length: the document side is cut
    "Index terms chosen by hand and by machine compared on 1400 aerodynamics abstracts.",
    "A short text.",  # repeated text: scored once, same score
]


def tiny_checkpoint(path, num_labels: int) -> str:
    from contract_factories import tiny_bert

    return tiny_bert(path, "BertForSequenceClassification", num_labels=num_labels)


@pytest.fixture(scope="module", params=[1, 2], ids=["one-label", "two-labels"])
def checkpoint(request, tmp_path_factory):
    torch.set_num_threads(2)
    return tiny_checkpoint(tmp_path_factory.mktemp(f"ce{request.param}"), request.param)


def test_scores_match_sentence_transformers(checkpoint) -> None:
    ours = CrossEncoderReranker(checkpoint, max_length=128, batch_size=2, precision="fp32")
    got = ours.predict(QUERY, TEXTS)
    ref = st_ce.CrossEncoder(checkpoint, max_length=128, device="cpu").predict(
        [(QUERY, t) for t in TEXTS], batch_size=3
    )
    ref = np.asarray(ref)
    ref = ref if ref.ndim == 1 else ref[:, -1]  # multi-label: we score the last column
    np.testing.assert_allclose(got, ref, atol=1e-5, rtol=0)
    assert got[1] == got[4]


def test_rerank_orders_by_score_and_applies_threshold(checkpoint) -> None:
    docs = [Document(id=f"d{i}", text=t) for i, t in enumerate(TEXTS)]
    ranking = Ranking.from_scored(Query(text=QUERY), ((d, 0.0) for d in docs))
    rr = CrossEncoderReranker(checkpoint, max_length=128, precision="fp32")
    scores = dict(zip([d.id for d in docs], rr.predict(QUERY, TEXTS), strict=True))
    out = rr.rerank(ranking, k=3)
    assert out.ids == sorted(scores, key=lambda i: (-scores[i], i))[:3]
    cut = sorted(scores.values())[2]
    kept = CrossEncoderReranker(checkpoint, max_length=128, threshold=float(cut), precision="fp32")
    assert all(h.score >= cut for h in kept.rerank(ranking).hits)
    assert len(kept.rerank(ranking)) == sum(s >= cut for s in scores.values())


def test_query_longer_than_max_length_falls_back_to_longest_first(checkpoint) -> None:
    rr = CrossEncoderReranker(checkpoint, max_length=16, precision="fp32")
    got = rr.predict("a very long query " * 20, ["doc one", "doc two " * 30])
    assert got.shape == (2,) and np.isfinite(got).all()


def test_bf16_autocast_stays_close(checkpoint) -> None:
    fp32 = CrossEncoderReranker(checkpoint, max_length=128, precision="fp32").predict(QUERY, TEXTS)
    bf16 = CrossEncoderReranker(checkpoint, max_length=128, precision="bf16").predict(QUERY, TEXTS)
    np.testing.assert_allclose(bf16, fp32, atol=0.05)
