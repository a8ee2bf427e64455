"""Inputs that used to give tracebacks are one line (exit 2 from the CLI, 422 from the server),
and a failed ``rag index`` leaves no folder behind when it committed no document."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rag.app.cli import main
from rag.pipeline import Pipeline
from retrievers import BM25Retriever

SURROGATE = '{"_id": "a", "text": "lone \\ud800 surrogate"}\n'  # a JSON escape: valid JSON


def one_line(err: str) -> str:
    assert err.count("\n") == 1 and "Traceback" not in err, err
    return err


def test_lone_surrogate_in_jsonl_is_one_line_and_leaves_no_folder(tmp_path, capsys):
    src = tmp_path / "s.jsonl"
    src.write_text(SURROGATE, encoding="utf-8")
    out = tmp_path / "idx"
    assert main(["index", str(src), "--out", str(out), "--retriever", "bm25"]) == 2
    assert "surrogate" in one_line(capsys.readouterr().err)
    assert not out.exists()
    src.write_text('{"_id": "a", "text": "fixed"}\n', encoding="utf-8")  # no --overwrite needed
    assert main(["index", str(src), "--out", str(out), "--retriever", "bm25"]) == 0


def test_lone_surrogate_in_post_documents_is_422(tmp_path, demo_docs):
    from fastapi.testclient import TestClient

    from rag.app.server import create_app

    idx = tmp_path / "idx"
    Pipeline(retriever=BM25Retriever()).index(demo_docs[:3]).save(idx)
    client = TestClient(create_app(Pipeline.open(idx), auth=False))
    for doc in ('{"id": "a", "text": "lone \\ud800"}', '{"id": "\\udfff", "text": "t"}',
                '{"id": "a", "text": "t", "metadata": {"k": "\\ud800"}}'):
        r = client.post("/documents", content=f'{{"documents": [{doc}]}}',
                        headers={"Content-Type": "application/json"})
        assert r.status_code == 422, r.text
        assert any(w in r.json()["message"] for w in ("surrogate", "unicode"))
    assert len(Pipeline.open(idx).retriever) == 3  # nothing applied


def test_lone_surrogate_through_the_library_is_one_config_error(tmp_path):
    from rag.core.errors import ConfigError

    pipe = Pipeline(retriever=BM25Retriever())
    pipe.save(tmp_path / "idx")
    with pytest.raises(ConfigError, match="surrogate"):
        pipe.index([{"id": "a", "text": "x", "title": "\ud800"}])


@pytest.mark.parametrize(
    "name, content, needle",
    [
        ("binary.yaml", b"\x00\xff\xfe\x80 not text", "not a text config"),
        ("binary.json", bytes(range(256)), "not a text config"),
        ("loop.yaml", b"a: &a [*a]\n", "contains itself"),
        ("loop2.yaml", b"type: bm25\nk1: &x {a: *x}\n", "contains itself"),
    ],
)
def test_config_validate_on_binary_or_recursive_files_is_one_line(tmp_path, capsys, name,
                                                                  content, needle):
    f = tmp_path / name
    f.write_bytes(content)
    assert main(["config", "validate", str(f)]) == 2
    assert needle in one_line(capsys.readouterr().err)


@pytest.mark.parametrize("corpus", ["missing.jsonl", "missing-folder/"])
def test_rag_index_on_a_missing_input_leaves_no_folder(tmp_path, capsys, corpus):
    out = tmp_path / "idx"
    assert main(["index", str(tmp_path / corpus), "--out", str(out)]) == 2
    one_line(capsys.readouterr().err)
    assert not out.exists()


def test_a_failed_append_keeps_the_existing_index(tmp_path, capsys, demo_docs):
    idx = tmp_path / "idx"
    Pipeline(retriever=BM25Retriever()).index(demo_docs[:3]).save(idx)
    bad = tmp_path / "bad.jsonl"
    bad.write_text(SURROGATE, encoding="utf-8")
    assert main(["index", str(bad), "--out", str(idx), "--append"]) == 2
    one_line(capsys.readouterr().err)
    assert len(Pipeline.open(idx).retriever) == 3
    assert json.loads((Path(idx) / "manifest.json").read_text())["manifest"]["generation"] == 1
