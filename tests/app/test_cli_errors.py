"""Every anticipated CLI error is one line on stderr with exit code 2 — never a traceback — and
BM25 never pads results with documents that match no query term.

The bad inputs are the ones a new user actually produced (issue #16): a Latin-1 corpus, a ``.gz``
that is not gzip, ``--out`` naming a file, metadata that is not a mapping, a config with a wrong
type or an unknown key, YAML that does not parse, a missing index, ``k`` out of range.
"""

from __future__ import annotations

import gzip
import json
import signal
import subprocess
import sys
import time

import pytest

from rag.app.cli import main


def _corpus(tmp_path, rows, name="corpus.jsonl"):
    p = tmp_path / name
    p.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return p


@pytest.fixture(scope="module")
def bm25_index(tmp_path_factory):
    from rag.app.cli import demo_corpus_path

    idx = tmp_path_factory.mktemp("cli") / "idx"
    assert main(["index", str(demo_corpus_path()), "--out", str(idx), "--retriever", "bm25"]) == 0
    return idx


def _bad_inputs(tmp_path, bm25_index):
    """(argv, expected substring of the one error line)."""
    latin = tmp_path / "latin1.jsonl"
    latin.write_bytes('{"_id": "a", "text": "caf\u00e9 cr\u00e8me"}\n'.encode("latin-1"))
    fake_gz = tmp_path / "fake.jsonl.gz"
    fake_gz.write_text('{"_id": "a", "text": "plain text, not gzip"}\n')
    cut_gz = tmp_path / "cut.jsonl.gz"
    cut_gz.write_bytes(gzip.compress(b'{"_id": "a", "text": "x"}\n' * 50)[:30])
    meta = _corpus(tmp_path, [{"_id": "a", "text": "x", "metadata": [1, 2]}], "meta.jsonl")
    ok = _corpus(tmp_path, [{"_id": "a", "text": "cats purr"}], "ok.jsonl")
    a_file = tmp_path / "a_file"
    a_file.write_text("I am a file")
    bad_type = tmp_path / "bad_type.yaml"
    bad_type.write_text("type: bm25\nk1: abc\n")
    unknown_key = tmp_path / "unknown_key.json"
    unknown_key.write_text(json.dumps({"type": "bm25", "k2": 1.0}))
    unknown_type = tmp_path / "unknown_type.json"
    unknown_type.write_text(json.dumps({"type": "nope"}))
    broken_yaml = tmp_path / "broken.yaml"
    broken_yaml.write_text("type: bm25\n  k1: [1\n")
    a_list = tmp_path / "list.json"
    a_list.write_text("[1, 2]")
    not_a_retriever = tmp_path / "chunker.yaml"
    not_a_retriever.write_text("type: chunker\nchunk_size: 64\n")
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "a.md").write_text("# A\n\ncats purr\n")
    return [
        (["index", str(latin), "--out", str(tmp_path / "o1")], "not UTF-8"),
        (["index", str(fake_gz), "--out", str(tmp_path / "o2")], "gzip"),
        (["index", str(cut_gz), "--out", str(tmp_path / "o3")], "gzip"),
        (["index", str(meta), "--out", str(tmp_path / "o4")], "metadata"),
        (["index", str(ok), "--out", str(a_file), "--retriever", "bm25"], str(a_file.name)),
        (["index", str(ok), "--out", str(tmp_path / "o5"), "--config", str(bad_type)], "bm25.k1"),
        (["index", str(ok), "--out", str(tmp_path / "o6"), "--config", str(unknown_key)], "k2"),
        (["index", str(ok), "--out", str(tmp_path / "o7"), "--config", str(unknown_type)], "nope"),
        (["index", str(ok), "--out", str(tmp_path / "o8"), "--config", str(broken_yaml)], "YAML"),
        (["index", str(ok), "--out", str(tmp_path / "o9"), "--config", str(a_list)], "mapping"),
        (["index", str(ok), "--out", str(tmp_path / "o10"), "--config", "missing.yaml"], "exist"),
        (["index", str(ok), "--out", str(tmp_path / "o11"), "--config", str(not_a_retriever)],
         "not a retriever or a pipeline"),
        (["index", str(notes), "--out", str(tmp_path / "o12"), "--config", str(not_a_retriever)],
         "not a retriever or a pipeline"),
        (["search", str(tmp_path / "no_index"), "planets"], "not a saved index"),
        (["search", str(bm25_index), "planets", "-k", "0"], "k must be >= 1"),
        (["search", str(bm25_index), "planets", "-k", "-3"], "k must be >= 1"),
        (["search", str(bm25_index), "   "], "query is empty"),
        (["config", "validate", str(bad_type)], "bm25.k1"),
        (["config", "schema", "nope"], "unknown node type"),
    ]


def test_every_anticipated_cli_error_is_one_line_with_exit_2(tmp_path, bm25_index, capsys):
    for argv, expected in _bad_inputs(tmp_path, bm25_index):
        code = main(argv)
        err = capsys.readouterr().err
        lines = [ln for ln in err.splitlines() if ln.strip()]
        assert code == 2, (argv, err)
        assert len(lines) == 1 and lines[0].startswith("error: "), (argv, err)
        assert expected in lines[0], (argv, lines[0])


@pytest.mark.parametrize("query", ["\U0001f680", "the and of", "zzzqqq"])
def test_bm25_returns_no_documents_that_match_no_query_term(bm25_index, capsys, query):
    assert main(["search", str(bm25_index), query, "-k", "1000000000", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == []


def test_bm25_never_pads_with_zero_scores(bm25_index, capsys):
    assert main(["search", str(bm25_index), "Jupiter", "-k", "1000", "--json"]) == 0
    hits = json.loads(capsys.readouterr().out)
    assert hits and all(h["score"] > 0 for h in hits) and len(hits) < 24


def test_version_and_defaults_in_help(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0 and capsys.readouterr().out.startswith("ragnodes ")
    with pytest.raises(SystemExit):
        main(["search", "--help"])
    assert "(default: 10)" in capsys.readouterr().out


def test_ctrl_c_exits_130_without_a_traceback(tmp_path):
    """A real SIGINT to a running `rag index` (a corpus big enough to still be reading)."""
    rows = [{"_id": str(i), "text": f"document number {i} " * 40} for i in range(200_000)]
    corpus = _corpus(tmp_path, rows)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "rag.app.cli",
            "index",
            str(corpus),
            "--out",
            str(tmp_path / "i"),
            "--retriever",
            "bm25",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # a test run in the background (`pytest &`) inherits SIGINT ignored, and Python then
        # installs no KeyboardInterrupt handler: give the child the default disposition back
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    time.sleep(3.0)
    assert proc.poll() is None, "finished before it could be interrupted; make the corpus bigger"
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and err.strip() == "interrupted"


def test_config_validate_walks_a_valid_pipeline(tmp_path, capsys):
    cfg = tmp_path / "p.yaml"
    cfg.write_text(
        "type: pipeline\nk: 5\nretriever:\n  type: hybrid\n"
        "  retrievers: [{type: bm25, k1: 1.2}, {type: bm25}]\n"
    )
    assert main(["config", "validate", str(cfg)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("ok: ") and out.count("bm25 (BM25Retriever)") == 2


def test_every_registered_node_has_a_json_schema_and_validates_its_own_config():
    import rag.ingest  # noqa: F401  (registers every node type)
    from rag.core.config import node_schema, validate_params
    from rag.core.nodes import REGISTRY

    for name, cls in REGISTRY.items():
        schema = node_schema(cls)
        assert schema["properties"]["type"] == {"const": name}
        assert schema.get("additionalProperties") is False
    from retrievers import BM25Retriever

    cfg = BM25Retriever(k1=1.2).to_config()
    cfg.pop("type")
    assert validate_params(BM25Retriever, cfg)["k1"] == 1.2


def test_the_pipeline_names_each_stage_that_drops_the_instruction(demo_docs):
    from rag.compressors.redundancy import RedundancyFilter
    from rag.core.types import Query
    from rag.pipeline import Pipeline
    from retrievers import BM25Retriever

    pipe = Pipeline(retriever=BM25Retriever(), compressors=[RedundancyFilter()], k=2)
    pipe.index(demo_docs)
    with pytest.warns(UserWarning, match="instruction is ignored by BM25Retriever$"):
        pipe.search(Query(text="planets", instruction="only gas giants"))
