"""The spine: value types, config, fusion, filters, model resolution, errors, generation, CLI."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from rag.core.errors import ConfigError, DataError, MissingExtraError, ModelNotFoundError
from rag.core.types import Document, Hit, Query, Ranking


def _ranking(pairs, qid="q"):
    q = Query(id=qid, text="t")
    return Ranking.from_scored(q, [(Document(id=i, text=i), s) for i, s in pairs])


def test_ranking_from_scored_orders_and_dedups():
    r = _ranking([("b", 1.0), ("a", 1.0), ("c", 2.0), ("b", 0.5)])
    assert r.ids == ["c", "a", "b"]  # score desc, id asc; duplicate keeps its best score
    assert r.scores == [2.0, 1.0, 1.0]
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="frozen"):
        r.hits[0].score = 3


def test_documents_accept_beir_dicts_and_keep_metadata():
    from rag.core.types import as_documents

    (d,) = as_documents([{"_id": 7, "text": "x", "title": "T", "year": 2020}])
    assert (d.id, d.title, d.metadata) == ("7", "T", {"year": 2020})
    assert d.full_text == "T x"


def test_rrf_matches_formula_and_is_order_independent():
    from retrievers.fusion import rrf, score_fusion

    a = _ranking([("x", 3), ("y", 2), ("z", 1)])
    b = _ranking([("y", 9), ("w", 8)])
    fused = rrf([a, b], weights=[1.0, 2.0])
    expect = {"x": 1 / 61, "y": 1 / 62 + 2 / 61, "z": 1 / 63, "w": 2 / 62}
    assert dict(zip(fused.ids, fused.scores)) == pytest.approx(expect)
    assert rrf([b, a], weights=[2.0, 1.0]).ids == fused.ids
    s1 = score_fusion([a, b], norm="zscore")
    s2 = score_fusion([b, a], norm="zscore")
    assert s1.ids == s2.ids and s1.scores == pytest.approx(s2.scores)
    with pytest.raises(ConfigError, match="2 weights for 1"):
        rrf([a], weights=[1, 2])


def test_filters_agree_between_exact_and_qdrant():
    from retrievers.stores import ExactStore, QdrantStore, matches

    rng = np.random.default_rng(0)
    vecs = rng.normal(size=(40, 8)).astype(np.float32)
    ids = [f"d{i}" for i in range(40)]
    meta = [
        {"metadata": {"year": 2000 + i % 10, "lang": "en" if i % 3 else "de"}} for i in range(40)
    ]
    flt = {"year": {"gte": 2003, "lt": 2007}, "lang": ["en"]}
    q = rng.normal(size=(3, 8)).astype(np.float32)
    results = []
    for store in (ExactStore(), QdrantStore(collection="f")):
        store.add(ids, vecs, meta)
        results.append(store.search(q, 5, flt))
    for a, b in zip(*results):
        assert [i for i, _ in a] == [i for i, _ in b]
        assert [s for _, s in a] == pytest.approx([s for _, s in b], abs=1e-5)
        assert all(matches(meta[int(i[1:])]["metadata"], flt) for i, _ in a)
    with pytest.raises(ConfigError, match="unknown operator"):
        ExactStore().search(q, 3, {"year": {"between": 1}})


def test_retriever_filter_and_upsert(demo_docs):
    from retrievers import BM25Retriever

    docs = [d.model_copy(update={"metadata": {"n": i}}) for i, d in enumerate(demo_docs)]
    r = BM25Retriever().index(docs)
    got = r.retrieve("planet", k=50, filter={"n": {"lt": 5}})
    assert got.ids and all(h.document.metadata["n"] < 5 for h in got.hits)
    r.index([Document(id="mars", text="replaced text about chocolate")])
    assert len(r) == len(docs)
    assert r.retrieve("chocolate", k=1).ids == ["mars"]
    with pytest.raises(ConfigError, match="duplicate document id"):
        r.index([Document(id="a", text="x"), Document(id="a", text="y")])


def test_exact_store_topk_matches_argsort():
    from retrievers.stores.exact import topk_rows

    s = np.random.default_rng(1).integers(0, 5, size=(6, 50)).astype(np.float32)  # many ties
    idx, vals = topk_rows(s, 7)
    for row, ii in zip(s, idx):
        ref = sorted(range(50), key=lambda j: (-row[j], j))[:7]
        assert list(ii) == ref


def test_model_resolution_and_offline_error():
    from rag.core.encoders import TransformerEncoder
    from rag.core.models import resolve_model

    assert resolve_model("minilm").endswith("model")
    assert resolve_model("sentence-transformers/all-MiniLM-L6-v2") == resolve_model("minilm")
    enc = TransformerEncoder("no-such-org/no-such-model-xyz")  # cheap: nothing loaded yet
    with pytest.raises(ModelNotFoundError, match="huggingface-cli download.*minilm"):
        enc.load()


def test_missing_extra_names_the_install_command():
    from rag.core.extras import require

    with pytest.raises(MissingExtraError, match=r'pip install "ragnodes\[vllm\]"'):
        require("vllm_definitely_missing_module", extra="vllm")


def test_bad_corpus_lines_name_file_and_line(tmp_path):
    from rag.index.persist import read_documents

    p = tmp_path / "c.jsonl"
    p.write_text('{"_id": "a", "text": "ok"}\n{"_id": "b", "text": \n')
    with pytest.raises(DataError, match=r"c.jsonl:2: malformed JSON"):
        read_documents(p)
    p.write_text('{"_id": "a", "title": "no text"}\n')
    with pytest.raises(DataError, match="record 1 has no 'text'"):
        read_documents(p)


def test_citations_parse_and_resolve():
    from rag.pipeline.citations import attribute, parse_markers, resolve

    hits = [Hit(document=Document(id=i, text=t), score=1.0) for i, t in
            [("a", "Jupiter is the largest planet"), ("b", "Mars is red")]]
    assert parse_markers("x [2]. y [1, 3] [2-3] [foo]") == [2, 1, 3]
    cites, bad = resolve("Mars is red [2]. Also [7].", hits)
    assert [c.document_id for c in cites] == ["b"] and bad == [7]
    att = attribute("The largest planet is Jupiter.", hits)
    assert [(c.document_id, c.source) for c in att] == [("a", "attributed")]


def test_prompts_render_strictly():
    import prompts

    assert "Question: Q?" in prompts.render("answer_user", question="Q?", sources="[1] s")
    with pytest.raises(ConfigError, match="missing \\['sources'\\]"):
        prompts.render("answer_user", question="Q?")
    assert len(prompts.version("answer_user")) == 12


def test_generator_stream_equals_generate_and_honours_stop(smollm):
    msgs = [{"role": "user", "content": "List three colours, one per line."}]
    full = smollm.generate(msgs, max_new_tokens=24)
    assert "".join(smollm.stream(msgs, max_new_tokens=24)) == full
    cut = smollm.generate(msgs, max_new_tokens=24, stop=["\n"])
    assert "\n" not in cut and full.startswith(cut)


def _rag(*args, **kw):
    return subprocess.run(
        [sys.executable, "-m", "rag.app.cli", *args],
        capture_output=True, text=True, timeout=600, **kw,
    )


def test_cli_index_search_ask_and_errors(tmp_path):
    from rag.app.cli import demo_corpus_path

    idx = tmp_path / "idx"
    out = _rag("index", str(demo_corpus_path()), "--out", str(idx), "--retriever", "bm25")
    assert out.returncode == 0, out.stderr
    out = _rag("search", str(idx), "largest planet", "-k", "2", "--json")
    assert "jupiter" in [h["id"] for h in json.loads(out.stdout)]
    out = _rag("ask", str(idx), "What is the hottest planet?", "--json", "--max-new-tokens", "48")
    ans = json.loads(out.stdout)
    ctx = {h["document"]["id"] for h in ans["contexts"]}
    assert ans["citations"] and {c["document_id"] for c in ans["citations"]} <= ctx
    assert "venus" in {c["document_id"] for c in ans["citations"]}
    bad = _rag("search", str(idx), "x", "-k", "0")
    assert bad.returncode == 2 and "k must be >= 1, got 0" in bad.stderr
    bad = _rag("search", str(idx), " ")
    assert bad.returncode == 2 and "query is empty" in bad.stderr
    bad = _rag("index", str(tmp_path / "missing.jsonl"), "--out", str(idx))
    assert bad.returncode == 2 and "does not exist" in bad.stderr
    (tmp_path / "bad.jsonl").write_text('{"_id": "a", "text": "x"}\nnot json\n')
    bad = _rag("index", str(tmp_path / "bad.jsonl"), "--out", str(idx))
    assert bad.returncode == 2 and "bad.jsonl:2" in bad.stderr


def test_stop_strings_never_match_across_the_prompt_boundary(smollm):
    import torch

    from rag.generators.transformers import _StopOnGeneratedText

    tok = smollm.tokenizer
    prompt = tok("question\n", add_special_tokens=False)["input_ids"]
    stop = _StopOnGeneratedText(tok, ["\n["], len(prompt))
    gen = tok("[1] Venus", add_special_tokens=False)["input_ids"]
    assert not bool(stop(torch.tensor([prompt + gen]), None)[0])
    more = tok("[1] Venus.\n[2]", add_special_tokens=False)["input_ids"]
    assert bool(stop(torch.tensor([prompt + more]), None)[0])


def test_constructing_a_node_without_its_extra_names_the_install_command():
    from typing import ClassVar

    from rag.core.nodes import Node

    class NeedsMissing(Node):  # unregistered (no name): the registry stays clean
        requires: ClassVar[tuple[str, ...]] = ("qdrant_client", "no_such_module_xyz")

        def __init__(self, x: int = 1) -> None:
            self.x = x

    with pytest.raises(MissingExtraError, match="no_such_module_xyz.*NeedsMissing.*pip install"):
        NeedsMissing()
