"""SpladeRetriever: vectors equal sentence-transformers' SparseEncoder (MLMTransformer +
SpladePooling("max", "relu"), i.e. max over log1p(relu); ST's "log1p_relu" adds a second
log1p) on a tiny masked-LM checkpoint; retrieval, filters, deletes
and save/open behave as the contract says."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")
st_sparse = pytest.importorskip("sentence_transformers.sparse_encoder")

from contract_factories import tiny_mlm_checkpoint  # noqa: E402

TEXTS = [
    "Mechanized retrieval is limited by the speed of magnetic tape searching.",
    "A short text.",
    "Index terms chosen by hand and by machine compared on aerodynamics abstracts.",
]


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    import torch

    torch.set_num_threads(2)
    return tiny_mlm_checkpoint(tmp_path_factory.mktemp("splade"))


def test_vectors_equal_sentence_transformers_sparse_encoder(ckpt):
    import warnings

    from retrievers.splade import SpladeRetriever

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from sentence_transformers.sparse_encoder.models import MLMTransformer, SpladePooling
    ref_model = st_sparse.SparseEncoder(
        modules=[MLMTransformer(ckpt, max_seq_length=64), SpladePooling("max", "relu")],
        device="cpu",
    )
    ref = ref_model.encode(TEXTS, convert_to_tensor=True).to_dense().numpy()
    ours = SpladeRetriever(model=ckpt, max_length=64, batch_size=2).encode(TEXTS).toarray()
    assert ours.shape == ref.shape
    np.testing.assert_allclose(ours, ref, rtol=1e-4, atol=1e-5)
    assert (ours > 0).sum(1).min() > 0  # every text has terms


def test_search_filters_delete_and_save_open(ckpt, tmp_path):
    from rag.pipeline import Pipeline
    from retrievers.splade import SpladeRetriever

    docs = [
        {"id": str(i), "text": t, "metadata": {"even": i % 2 == 0}} for i, t in enumerate(TEXTS)
    ]
    r = SpladeRetriever(model=ckpt, max_length=64).index(docs)
    hits = r.retrieve(TEXTS[2], k=3)
    assert hits.ids[0] == "2" and len(set(hits.ids)) == len(hits.ids)
    assert all(r.documents[i].metadata["even"] for i in r.retrieve(TEXTS[1], 3, {"even": True}).ids)
    want = r.retrieve(TEXTS[0], k=3)
    Pipeline(retriever=r).save(tmp_path / "idx")
    again = Pipeline.open(tmp_path / "idx").retriever
    got = again.retrieve(TEXTS[0], k=3)
    assert got.ids == want.ids
    np.testing.assert_allclose([h.score for h in got.hits], [h.score for h in want.hits], 1e-6)
    assert r.delete(["2"]) == 1 and "2" not in r.retrieve(TEXTS[2], k=3).ids
