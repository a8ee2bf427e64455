"""RemoteEncoder (rag/core/remote_encoder.py) through ragnodes' own server: `rag serve`'s
/v1/embeddings of a MiniLM dense index on a real uvicorn server on 127.0.0.1, sync and async,
with the embedding cache in front, bounded retries against a closed port, and one error line for
a bad request. Nothing of ragnodes is mocked."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest
from server_procs import serving as _serving

from rag.core.errors import ConfigError, RagError
from rag.core.nodes import Node
from rag.core.remote_encoder import RemoteEncoder

KEY = "remote-encoder-test-key-01"



def serving(app):  # the shared in-process server (server_procs), at its /v1 routes
    return _serving(app, "/v1")


@pytest.fixture(scope="module")
def local():
    from rag.core.encoders import TransformerEncoder

    return TransformerEncoder("minilm", cache=None).load()


@pytest.fixture(scope="module")
def base_url(local):
    pytest.importorskip("httpx")
    from rag.app.cli import demo_corpus_path
    from rag.app.server import create_app
    from rag.index.persist import read_documents
    from rag.pipeline import Pipeline
    from retrievers import DenseRetriever

    dense = DenseRetriever(encoder=local).index(read_documents(demo_corpus_path())[:3])
    with serving(create_app(Pipeline(retriever=dense), api_keys=[KEY])) as url:
        yield url


TEXTS = [f"sentence number {i} about planets and moons" for i in range(9)] + ["Jupiter"]


def test_same_vectors_as_the_local_encoder(base_url, local, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("TEST_EMBED_KEY", KEY)
    enc = RemoteEncoder(base_url, model="minilm", api_key_env="TEST_EMBED_KEY", batch_size=3,
                        max_concurrency=2, cache=str(tmp_path / "cache"))
    ref = local.encode(TEXTS)
    got = enc.encode(TEXTS)
    # the server runs the very same fp32 encoder; its batches differ (length-sorted batches of
    # 3 vs 10 rows, different padding), so rows agree to float32 reassociation: 1e-5 absolute on
    # unit vectors of 384 dims is ~100 ulps of the largest component
    assert got.shape == ref.shape == (10, 384)
    np.testing.assert_allclose(got, ref, atol=1e-5)
    assert enc.dim == 384
    # documents went through the cache: a second call sends nothing (server stopped-proof)
    from rag.core.embed_cache import cache_for

    cache = cache_for(enc)
    assert cache is not None and len(cache) >= len(TEXTS)
    hits = cache.stats["hits"]
    np.testing.assert_array_equal(enc.encode(TEXTS), got)
    assert cache.stats["hits"] - hits == len(TEXTS)
    # queries are never cached, and the async variant gives the same rows
    q = enc.encode(["Which planet is the largest?"], kind="query")
    np.testing.assert_allclose(q, local.encode(["Which planet is the largest?"], kind="query"),
                               atol=1e-5)
    fresh = RemoteEncoder(base_url, api_key_env="TEST_EMBED_KEY", max_concurrency=2, batch_size=4)
    np.testing.assert_allclose(asyncio.run(fresh.aencode(TEXTS, kind="query")), ref, atol=1e-5)


def test_errors_are_one_line_and_retries_are_bounded(base_url, monkeypatch) -> None:
    monkeypatch.setenv("TEST_EMBED_KEY", "wrong-key")
    enc = RemoteEncoder(base_url, api_key_env="TEST_EMBED_KEY", max_retries=0)
    with pytest.raises(RagError, match="answered 401"):
        enc.encode(["x"], kind="query")
    dead = RemoteEncoder("http://127.0.0.1:9/v1", max_retries=2, backoff=0.01, timeout=2)
    t0 = time.perf_counter()
    with pytest.raises(RagError, match="unreachable after 3 tries"):
        dead.encode(["x"], kind="query")
    assert time.perf_counter() - t0 < 10
    with pytest.raises(ConfigError, match="base_url"):
        RemoteEncoder("localhost:8000")


def test_config_round_trip_keeps_the_key_out() -> None:
    enc = RemoteEncoder("http://127.0.0.1:8000/v1", model="bge", api_key_env="MY_KEY")
    cfg = enc.to_config()
    assert cfg["api_key_env"] == "MY_KEY" and "api_key" not in cfg
    assert Node.from_config(cfg) == enc
    from retrievers import DenseRetriever

    dense = DenseRetriever(encoder=enc)
    assert Node.from_config(dense.to_config()) == dense
