"""MultiVectorRetriever backends and LateInteractionReranker on adi with MiniLM token vectors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from rag.errors import ConfigError
from rag.nodes import Node
from rag.persist import load_retriever
from rag.types import Query, Ranking
from retrievers.multivector import (
    LateInteractionReranker,
    MultiVectorRetriever,
    MuveraFDE,
    QdrantMultiVectorStore,
    TokenEncoder,
)

ADI = Path(__file__).resolve().parents[1].parent / "shared" / "datasets" / "adi"
pytestmark = pytest.mark.skipif(not ADI.exists(), reason="../shared/datasets/adi not present")


@pytest.fixture(scope="module")
def adi():
    import torch

    torch.set_num_threads(2)
    from rag.persist import read_documents, read_jsonl

    docs = read_documents(ADI / "corpus.jsonl")[:24]
    qs = [Query(id=q["_id"], text=q["text"]) for q in read_jsonl(ADI / "queries.jsonl")[:5]]
    return docs, qs


@pytest.fixture(scope="module")
def encoder():
    return TokenEncoder(precision="fp32").load()


@pytest.fixture(scope="module")
def built(adi, encoder):
    docs, _ = adi
    out = {}
    for name, kw in {
        "exact": {"backend": "exact"},
        "muvera": {"backend": "muvera", "candidates": 1000},
        "qdrant": {"backend": "qdrant", "qdrant": QdrantMultiVectorStore(collection="t")},
    }.items():
        out[name] = MultiVectorRetriever(encoder=encoder, **kw).index(docs)
    return out


def test_backends_agree_with_exact(built, adi) -> None:
    _, qs = adi
    ref = built["exact"].retrieve_batch(qs, k=10)
    for name in ("muvera", "qdrant"):  # muvera reranks every document here: must equal exact
        got = built[name].retrieve_batch(qs, k=10)
        for a, b in zip(ref, got, strict=True):
            assert a.ids == b.ids, name
            np.testing.assert_allclose(a.scores, b.scores, atol=2e-3)  # float16 tokens vs fp32


def test_contract(built, adi) -> None:
    docs, qs = adi
    for r in built.values():
        res = r.retrieve(qs[0], k=5)
        assert len(res) <= 5 and len(set(res.ids)) == len(res.ids)
        assert res.scores == sorted(res.scores, reverse=True)
        assert len(r.retrieve(qs[0], k=500)) == len(docs)
        assert r.retrieve_batch(qs[:2], k=3) == [r.retrieve(q, k=3) for q in qs[:2]]
        with pytest.raises(ConfigError):
            r.retrieve("   ", k=3)


def test_fde_only_is_a_first_stage(built, adi, encoder) -> None:
    docs, qs = adi
    r = MultiVectorRetriever(encoder=encoder, backend="muvera", rerank=False,
                             fde=MuveraFDE(k_sim=4, r_reps=10, d_proj=16)).index(docs)
    exact = built["exact"].retrieve_batch(qs, k=10)
    recall = np.mean([len(set(a.ids) & set(r.retrieve(a.query, k=20).ids)) / 10 for a in exact])
    assert recall >= 0.8


def test_config_round_trip_and_save_load(built, adi, tmp_path) -> None:
    _, qs = adi
    for name, r in built.items():
        cfg = r.to_config()
        assert Node.from_config(cfg).to_config() == cfg
        r.save(tmp_path / name)
        back = load_retriever(tmp_path / name)
        assert back.retrieve(qs[1], k=5) == r.retrieve(qs[1], k=5), name
        if name == "qdrant":
            back.qdrant.close()


def test_delete_and_filter(adi, encoder) -> None:
    docs, qs = adi
    tagged = [d.model_copy(update={"metadata": {"even": int(d.id) % 2 == 0}}) for d in docs[:12]]
    for backend in ("exact", "muvera"):
        r = MultiVectorRetriever(encoder=encoder, backend=backend).index(tagged)
        hits = r.retrieve(qs[0], k=12, filter={"even": True})
        assert hits.ids and all(int(i) % 2 == 0 for i in hits.ids)
        top = r.retrieve(qs[0], k=1).ids[0]
        r.delete([top])
        assert top not in r.retrieve(qs[0], k=12).ids


def test_reranker_equals_exact_maxsim(built, adi, encoder) -> None:
    docs, qs = adi
    rr = LateInteractionReranker(encoder=encoder)
    assert Node.from_config(rr.to_config()).to_config() == rr.to_config()
    pool = Ranking.from_scored(qs[2], [(d, 0.0) for d in docs[:15]])
    out = rr.rerank(pool, k=5)
    ids = [d.id for d in docs[:15]]
    q = encoder.encode_queries([qs[2].text])[0]
    want = built["exact"].token_store.score(q, ids)
    best = [ids[j] for j in np.argsort(-want, kind="stable")[:5]]
    assert out.ids == best
    np.testing.assert_allclose(out.scores, np.sort(want)[::-1][:5], atol=2e-3)
    assert rr.rerank(pool, k=5) == out  # second call served from the cache


def test_bad_config() -> None:
    with pytest.raises(ConfigError, match="backend"):
        MultiVectorRetriever(backend="plaid")
    with pytest.raises(ConfigError, match="candidates"):
        MultiVectorRetriever(candidates=0)
    with pytest.raises(ConfigError, match="query_length"):
        TokenEncoder(query_length=1)
