"""The ONNX Runtime encoder backend (rag/core/onnx_runtime.py) against the torch fp32 encoder on the
packaged MiniLM: fp32 gives the same vectors up to float reassociation, int8 the same ranking
up to quantisation noise; the backend is explicit and checked once."""

from __future__ import annotations

import numpy as np
import pytest

from rag.app.demo import demo_corpus_path
from rag.core.encoders import TransformerEncoder
from rag.core.errors import ConfigError
from rag.index.persist import read_documents


@pytest.fixture(scope="module")
def texts() -> list[str]:
    return [d.full_text for d in read_documents(demo_corpus_path())]


@pytest.fixture(scope="module")
def torch_vectors(texts: list[str]) -> np.ndarray:
    return TransformerEncoder("minilm", cache=None).encode(texts)


def test_onnx_fp32_equals_torch_fp32(texts, torch_vectors, tmp_path_factory, monkeypatch) -> None:
    pytest.importorskip("onnxruntime")
    enc = TransformerEncoder("minilm", backend="onnx", precision="fp32")
    got = enc.encode(texts)
    assert got.shape == torch_vectors.shape
    # unit vectors from 6 layers of fp32 GEMMs (reductions of 384 / 1536 terms) whose order ONNX
    # Runtime's fused kernels change: a few 1e-7 relative per layer, far below 1e-4 per element
    cos = np.sum(got * torch_vectors, axis=1)
    assert cos.min() >= 0.9999, cos.min()
    assert np.abs(got - torch_vectors).max() <= 1e-3
    q = enc.encode(["Which planet is the largest?"], kind="query")
    assert q.shape == (1, torch_vectors.shape[1])


def test_onnx_int8_keeps_the_ranking(texts, torch_vectors) -> None:
    pytest.importorskip("onnxruntime")
    from scipy.stats import spearmanr

    enc = TransformerEncoder("minilm", backend="onnx", precision="int8")
    got = enc.encode(texts)
    cos = np.sum(got * torch_vectors, axis=1)
    assert cos.min() >= 0.95, cos.min()  # int8 weights: per-vector noise, not a different space
    # every document ranked against every other: the similarity orders agree
    rho = spearmanr((got @ got.T).ravel(), (torch_vectors @ torch_vectors.T).ravel())[0]
    # (0.976 measured on AVX2; the many near-zero similarities carry most of the noise)
    assert rho >= 0.95, rho


def test_backend_and_precision_are_checked_once() -> None:
    with pytest.raises(ConfigError, match="backend must be one of"):
        TransformerEncoder(backend="tensorrt")
    with pytest.raises(ConfigError, match="precision"):
        TransformerEncoder(backend="onnx", precision="bf16")
    with pytest.raises(ConfigError, match="precision"):
        TransformerEncoder(precision="int8")  # int8 is an ONNX precision only
    with pytest.raises(ConfigError, match="layer=None"):
        TransformerEncoder(backend="onnx", layer=3)
    enc = TransformerEncoder(backend="onnx", precision="int8")
    assert TransformerEncoder.from_config(enc.to_config()) == enc
