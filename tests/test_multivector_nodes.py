"""MultiVectorRetriever backends and LateInteractionReranker on adi with MiniLM token vectors."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import SHARED, needs_dataset
from tolerance import assert_rankings_match, assert_same_ranking, maxsim_tol

from rag.errors import ConfigError
from rag.index import write_index
from rag.nodes import Node
from rag.persist import load_retriever
from rag.types import Query, Ranking
from rerankers.late_interaction import LateInteractionReranker
from retrievers.multivector import (
    MultiVectorRetriever,
    MuveraFDE,
    QdrantMultiVectorStore,
    TokenEncoder,
)

ADI = SHARED / "adi"
pytestmark = needs_dataset("adi")


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
    full = [built["exact"].retrieve(q, k=500) for q in qs]
    for name in ("muvera", "qdrant"):  # muvera reranks every document here: must equal exact
        got = built[name].retrieve_batch(qs, k=10)
        for a, b, every in zip(ref, got, full, strict=True):
            # float16 tokens vs fp32: scores within 2e-3, ids exact outside near-ties
            assert_same_ranking(b, a, 2e-3, dict(zip(every.ids, every.scores, strict=True)))


def test_contract(built, adi, encoder) -> None:
    docs, qs = adi
    for r in built.values():
        res = r.retrieve(qs[0], k=5)
        assert len(res) <= 5 and len(set(res.ids)) == len(res.ids)
        assert res.scores == sorted(res.scores, reverse=True)
        assert len(r.retrieve(qs[0], k=500)) == len(docs)
        # a batch multiplies both queries' tokens in one product (other shapes, maybe another
        # BLAS kernel than one query's): equal up to the MaxSim rounding bound, near-ties as sets
        for b, q in zip(r.retrieve_batch(qs[:2], k=3), qs[:2], strict=True):
            lq, dim = encoder.encode_queries([q.text])[0].shape
            every = r.retrieve(q, k=500)
            full = dict(zip(every.ids, every.scores, strict=True))
            assert_same_ranking(b, r.retrieve(q, k=3), maxsim_tol(lq, dim), full)
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
        write_index(r, tmp_path / name)
        back = load_retriever(tmp_path / name)
        # bit-exact by construction: the same vectors, the same code path and shapes
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
    order = np.argsort(-want, kind="stable")[:5]
    # the reranker's own float16 tokens vs the store's: within 2e-3, near-ties as sets
    assert_rankings_match(out.ids, out.scores, [ids[j] for j in order], want[order], 2e-3,
                          dict(zip(ids, want, strict=True)))
    assert rr.rerank(pool, k=5) == out  # second call served from the cache


def test_bad_config() -> None:
    with pytest.raises(ConfigError, match="backend"):
        MultiVectorRetriever(backend="plaid")
    with pytest.raises(ConfigError, match="candidates"):
        MultiVectorRetriever(candidates=0)
    with pytest.raises(ConfigError, match="query_length"):
        TokenEncoder(query_length=1)
