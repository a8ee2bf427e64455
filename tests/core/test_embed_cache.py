"""The on-disk embedding cache: exact vectors back, keyed by model files + encoder config + text,
and ``rag eval`` with three configs that share an encoder embeds the corpus once."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest

pytest.importorskip("torch")
from conftest import dataset_dir  # noqa: E402

from rag.core import embed_cache  # noqa: E402
from rag.core.encoders import TransformerEncoder  # noqa: E402


@pytest.fixture(autouse=True)
def _no_default_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RAGNODES_EMBED_CACHE", raising=False)
    embed_cache.set_default(None)


def test_cached_vectors_are_the_computed_ones(tmp_path, minilm) -> None:
    texts = ["late interaction", "dense retrieval", "late interaction", "bm25 baseline"]
    plain = TransformerEncoder(cache=None).encode(texts)
    enc = TransformerEncoder(cache=str(tmp_path))
    before = dict(embed_cache.STATS)
    first = enc.encode(texts)
    assert embed_cache.STATS["misses"] - before["misses"] == 3  # the repeated text once
    # 3 unique texts vs 4 in one batch: other padding and BLAS shapes move MiniLM's unit vectors
    # by float32 noise (<= 6e-7 measured); 1e-5 is the bound test_runtime_precision uses too
    np.testing.assert_allclose(first, plain, rtol=0, atol=1e-5)
    # a fresh encoder (new process state) reads the shards back
    embed_cache._caches.clear()
    again = TransformerEncoder(cache=str(tmp_path), batch_size=2)  # batch size is not in the key
    before = dict(embed_cache.STATS)
    second = again.encode(texts + ["a new text"])
    assert embed_cache.STATS["misses"] - before["misses"] == 1
    assert embed_cache.STATS["hits"] - before["hits"] == 4
    # bit-exact by construction: these four are the stored vectors of the first call, read back
    np.testing.assert_array_equal(second[:4], first)
    # queries never go through the cache; another config gets another namespace
    before = dict(embed_cache.STATS)
    enc.encode(["late interaction"], kind="query")
    assert embed_cache.STATS == before
    other = TransformerEncoder(cache=str(tmp_path), max_length=8)
    assert embed_cache.cache_for(other).folder != embed_cache.cache_for(enc).folder
    assert len(list(tmp_path.glob("*/key.json"))) == 1


def test_rag_eval_three_configs_embed_the_corpus_once(tmp_path) -> None:
    from evals.cli import evaluate_configs, write_outputs
    from evals.datasets import load_beir
    from retrievers import DenseRetriever
    from retrievers.stores.exact import ExactStore

    data = dataset_dir("adi")
    n_docs = len(load_beir(data).corpus)
    cfgs = []
    for name, r in (
        ("dense", DenseRetriever()),
        ("dense_text", DenseRetriever(index_batch=16)),
        ("dense_store", DenseRetriever(store=ExactStore())),
    ):
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps(r.to_config()))
        cfgs.append(str(path))
    args = argparse.Namespace(
        dataset=str(data),
        config=cfgs[0],
        compare=cfgs[1:],
        measures="ndcg@10",
        out=str(tmp_path),
        k=100,
        split="test",
        batch_size=32,
        test="t",
        correction="none",
        content_units="none",
        data_dir=str(tmp_path),
        no_html=True,
        no_progress=True,
        embed_cache=str(tmp_path / "cache"),
        no_embed_cache=False,
    )
    results, _ = evaluate_configs(args)
    notes = args.encoder_notes
    assert notes[0].endswith(f"documents embedded {n_docs}, from cache 0")
    assert notes[1].endswith(f"documents embedded 0, from cache {n_docs}")
    assert notes[2].endswith(f"documents embedded 0, from cache {n_docs}")
    assert "minilm (fp32)" in notes[0]
    # identical vectors, identical figures
    figures = {round(r.aggregate["nDCG@10"], 10) for r in results}
    assert len(figures) == 1 and round(figures.pop(), 4) == 0.4975
    md = write_outputs(results, args)
    assert "### Encoders" in md and "from cache" in md
