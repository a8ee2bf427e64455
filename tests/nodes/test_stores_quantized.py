"""Quantized and truncated indexes: ExactStore codes, Qdrant edge shards, server config mapping."""

from __future__ import annotations

import numpy as np
import pytest

from rag.core.errors import ConfigError
from retrievers.kernels import quantize as qz
from retrievers.stores import ExactStore, QdrantEdgeStore, QdrantStore


def data(n=600, d=48, seed=0, clusters=None):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d)).astype(np.float32) + 0.3  # not zero-mean, like real embeddings
    if clusters:
        centers = rng.normal(size=(clusters, d)).astype(np.float32) * 3
        x += centers[rng.integers(0, clusters, n)]
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    q = x[:25] + 0.5 * rng.normal(size=(25, d)).astype(np.float32)
    return [f"d{i:04d}" for i in range(n)], x, q


def store(ids, x, **kw):
    s = ExactStore(**kw)
    s.add(ids, x, [{"metadata": {"g": i % 3}} for i in range(len(ids))])
    return s


def recall(run, truth, k=10):
    hits = [len({a for a, _ in r[:k]} & {a for a, _ in t[:k]}) for r, t in zip(run, truth)]
    return np.mean(hits) / k


@pytest.mark.parametrize("kind,nbytes", [("binary", 6), ("2bit", 12), ("int8", 48)])
def test_codes_are_packed_and_decode_close_to_the_input(kind, nbytes):
    _, x, _ = data()
    cb = qz.fit(kind, x)
    codes = qz.encode(cb, x)
    assert codes.dtype == np.uint8 and codes.shape == (len(x), nbytes)
    assert qz.bytes_per_vector(kind, 48) == nbytes
    err = np.abs(qz.decode(cb, codes) - x).mean()
    spread = np.abs(x - x.mean(0)).mean()
    assert err < {"binary": 0.7, "2bit": 0.4, "int8": 0.02}[kind] * spread
    if kind == "2bit":  # quartile thresholds: four equally full buckets
        counts = np.bincount(qz.unpack(cb, codes).ravel(), minlength=4) / x.size
        np.testing.assert_allclose(counts, 0.25, atol=0.02)


def test_more_bits_give_better_approximate_scores():
    _, x, q = data()
    exact = q @ x.T
    corr = {}
    for kind in ("binary", "2bit", "int8"):
        cb = qz.fit(kind, x)
        a = qz.approx_scores(cb, qz.encode(cb, x), q)
        corr[kind] = np.mean([np.corrcoef(a[i], exact[i])[0, 1] for i in range(len(q))])
    assert corr["binary"] < corr["2bit"] < corr["int8"] and corr["int8"] > 0.99


@pytest.mark.parametrize("kw", [{"quantization": "binary"}, {"quantization": "2bit"},
                                {"quantization": "int8"}, {"dims": 16},
                                {"dims": 16, "quantization": "binary"}])
def test_rescoring_the_whole_collection_is_exact_including_ties(kw):
    ids, x, q = data(n=300)
    x[7] = x[3]  # an exact tie: the lower row must come first, as in exact search
    q[0] = x[3]
    exact = store(ids, x).search(q, 20)
    full = store(ids, x, oversampling=len(ids) / 20, **kw).search(q, 20)
    assert [[i for i, _ in r] for r in full] == [[i for i, _ in r] for r in exact]
    assert exact[0][0][0] == "d0003" and exact[0][1][0] == "d0007"
    np.testing.assert_allclose([s for r in full for _, s in r], [s for r in exact for _, s in r],
                               atol=1e-6)


def test_rescoring_recovers_recall_and_truncation_hurts_without_it():
    ids, x, q = data(n=2000, d=64)
    truth = store(ids, x).search(q, 10)
    for kind in ("binary", "2bit"):
        raw = recall(store(ids, x, quantization=kind, rescore=False).search(q, 10), truth)
        res = recall(store(ids, x, quantization=kind, oversampling=10).search(q, 10), truth)
        assert res > raw
    cut = store(ids, x, dims=16, rescore=False)
    r = cut.search(q, 10)
    t = x[:, :16] / np.linalg.norm(x[:, :16], axis=1, keepdims=True)
    manual = np.argsort(-(q[:, :16] @ t.T), axis=1, kind="stable")[:, :10]
    assert [[i for i, _ in row] for row in r] == [[ids[j] for j in m] for m in manual]
    assert cut.bytes_per_vector() == {"index": 64, "full": 256}


def test_compressed_store_round_trips_and_reuses_saved_codes(tmp_path):
    ids, x, q = data()
    s = store(ids, x, quantization="2bit", oversampling=3)
    before = s.search(q, 10, filter={"g": 1})
    assert all(int(i[1:]) % 3 == 1 for r in before for i, _ in r)
    s.save(tmp_path)
    again = ExactStore(quantization="2bit", oversampling=3)
    again.restore(tmp_path)
    assert again._codes is not None, "saved codes were not reused"
    assert again.search(q, 10, filter={"g": 1}) == before
    other = ExactStore(quantization="binary")  # another config: codes rebuilt from the vectors
    other.restore(tmp_path)
    assert other._codes is None and len(other.search(q, 5)) == len(q)


def test_incremental_add_delete_keep_codes_aligned():
    ids, x, q = data(n=400)
    s = store(ids[:300], x[:300], quantization="int8", oversampling=100)
    s.search(q, 5)  # fits the quantizer
    s.add(ids[300:], x[300:], [{} for _ in ids[300:]])
    s.delete(ids[:50])
    assert len(s._codes) == s.count() == 350
    exact = store(ids[50:], x[50:]).search(q, 10)
    assert [[i for i, _ in r] for r in s.search(q, 10)] == [[i for i, _ in r] for r in exact]


def test_bad_configs_fail_at_construction():
    with pytest.raises(ConfigError, match="quantization must be one of"):
        ExactStore(quantization="4bit")
    with pytest.raises(ConfigError, match="oversampling must be >= 1"):
        ExactStore(quantization="binary", oversampling=0.5)
    with pytest.raises(ConfigError, match="dims must be"):
        ExactStore(dims=0)
    with pytest.raises(ConfigError, match="needs a Qdrant server"):
        QdrantStore(quantization="binary")


@pytest.mark.parametrize("kind", ["binary", "2bit", "int8"])
def test_server_mode_maps_the_same_config_to_qdrant_client_models(kind):
    from qdrant_client import models

    s = QdrantStore(url="http://localhost:6333", quantization=kind, oversampling=3.0, hnsw_m=32,
                    hnsw_ef=128, on_disk=True, shard_number=6, replication_factor=2)
    cfg = s._collection_config(384)
    assert cfg["vectors_config"].on_disk is True
    assert cfg["shard_number"] == 6 and cfg["replication_factor"] == 2
    quant = cfg["quantization_config"]
    if kind == "int8":
        assert quant.scalar.type == models.ScalarType.INT8 and quant.scalar.quantile == 0.99
    else:
        enc = models.BinaryQuantizationEncoding
        assert quant.binary.encoding == (enc.ONE_BIT if kind == "binary" else enc.TWO_BITS)
    assert cfg["hnsw_config"].m == 32 and cfg["hnsw_config"].ef_construct == 100
    params = s._search_params()
    assert params.hnsw_ef == 128 and params.quantization.rescore is True
    assert params.quantization.oversampling == 3.0
    assert QdrantStore.from_config(s.to_config()) == s


def test_qdrant_edge_exact_quantized_and_hnsw(tmp_path):
    pytest.importorskip("qdrant_edge", reason="the qdrant-edge extra is not installed")
    ids, x, q = data(n=1500, d=32, clusters=20)
    payloads = [{"metadata": {"g": i % 3}} for i in range(len(ids))]
    truth = store(ids, x).search(q, 10)
    results = {}
    for name, kw in {"plain": {}, "binary": {"quantization": "binary", "rescore": False},
                     "binary+rescore": {"quantization": "binary", "oversampling": 10.0},
                     "hnsw": {"hnsw_m": 16, "hnsw_ef": 64}}.items():
        s = QdrantEdgeStore(**kw)
        s.add(ids, x, payloads)
        results[name] = s.search(q, 10)
        assert s.count() == len(ids)
        s.close()
    assert [[i for i, _ in r] for r in results["plain"]] == [[i for i, _ in r] for r in truth]
    assert recall(results["binary+rescore"], truth) > recall(results["binary"], truth)
    assert recall(results["hnsw"], truth) >= 0.9
    assert results["binary"][0][0][1] == int(results["binary"][0][0][1])  # Hamming-type score

    s = QdrantEdgeStore(quantization="int8")
    s.add(ids, x, payloads)
    s.delete(ids[:10])
    flt = s.search(q, 5, filter={"g": [1, 2]})
    assert all(int(i[1:]) % 3 and int(i[1:]) >= 10 for r in flt for i, _ in r)
    s.save(tmp_path)
    back = QdrantEdgeStore(quantization="int8")
    back.restore(tmp_path)
    assert back.count() == len(ids) - 10 and back.search(q, 5, filter={"g": [1, 2]}) == flt
    s.close()
    back.close()


def test_layer_embeddings_2d_matryoshka(minilm):
    from rag.core.encoders import TransformerEncoder

    texts = ["binary quantization of embeddings", "hnsw graphs and insertion order"]
    full = minilm.encode(texts)
    enc = TransformerEncoder(precision=minilm.precision, layer=6).load()
    last = enc.encode(texts)
    enc.layer = 2  # the same loaded network, an earlier layer
    early = enc.encode(texts)
    np.testing.assert_allclose(last, full, atol=1e-5)  # layer 6 of 6 is the usual output
    assert early.shape == full.shape and np.abs(early - full).max() > 0.05
    np.testing.assert_allclose(np.linalg.norm(early, axis=1), 1.0, atol=1e-5)
    with pytest.raises(ConfigError, match="layer must be <= 6"):
        enc.layer = 7
        enc._load()
    with pytest.raises(ConfigError, match="layer must be an int"):
        TransformerEncoder(layer=0)
