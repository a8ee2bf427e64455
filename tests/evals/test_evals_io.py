"""BEIR loading, TREC run/qrels files, run conversion, and the offline download error."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
from conftest import SHARED

from evals.datasets import load_beir
from evals.download import BEIR_MD5, download_beir
from evals.runs import run_from_rankings
from evals.trec import read_qrels, read_run, read_run_config, write_qrels, write_run
from rag.core.errors import ConfigError, DataError, RagError
from rag.core.types import Document, Hit, Query, Ranking

DATA = SHARED  # ../shared/datasets, or $RAGNODES_DATASETS


def _beir(tmp: Path, corpus: list[dict], queries: list[dict], qrels: str, gz: bool = False) -> Path:
    root = tmp / "mini"
    (root / "qrels").mkdir(parents=True)
    for stem, rows in (("corpus", corpus), ("queries", queries)):
        body = "".join(json.dumps(r) + "\n" for r in rows)
        if gz:
            with gzip.open(root / f"{stem}.jsonl.gz", "wt", encoding="utf-8") as f:
                f.write(body)
        else:
            (root / f"{stem}.jsonl").write_text(body)
    (root / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n" + qrels)
    return root


CORPUS = [{"_id": "d1", "title": "T", "text": "one"}, {"_id": 2, "text": "two"}]
QUERIES = [{"_id": "q1", "text": "first"}, {"_id": "q2", "text": "second"}]


@pytest.mark.parametrize("gz", [False, True])
def test_load_beir_reads_plain_and_gzip(tmp_path: Path, gz: bool) -> None:
    root = _beir(tmp_path, CORPUS, QUERIES, "q1\td1\t1\nq1\t2\t0\n", gz=gz)
    ds = load_beir(root)
    assert [d.id for d in ds.corpus] == ["d1", "2"]
    assert [q.id for q in ds.queries] == ["q1"]  # only judged queries by default
    assert ds.qrels == {"q1": {"d1": 1, "2": 0}}
    assert ds.warnings == []
    assert len(load_beir(root, all_queries=True).queries) == 2


def test_unknown_references_are_reported(tmp_path: Path) -> None:
    root = _beir(tmp_path, CORPUS, QUERIES, "q1\td1\t1\nq1\tghost\t1\nq9\td1\t1\n")
    ds = load_beir(root)
    assert len(ds.warnings) == 2
    assert any("'q9'" in w for w in ds.warnings)
    assert any("'ghost'" in w for w in ds.warnings)
    assert "q9" not in ds.qrels and "ghost" in ds.qrels["q1"]


def test_bad_lines_name_file_and_line(tmp_path: Path) -> None:
    root = _beir(tmp_path, CORPUS, QUERIES, "q1\td1\t1\nq1\td1\n")
    with pytest.raises(DataError, match=r"test\.tsv:3: expected 3"):
        load_beir(root)
    (root / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td1\tyes\n")
    with pytest.raises(DataError, match=r"test\.tsv:2: score 'yes'"):
        load_beir(root)
    (root / "qrels" / "test.tsv").write_text("q1\td1\t1\n")
    (root / "corpus.jsonl").write_text('{"_id": "a", "text": "x"}\n{"_id": "b", "text": \n')
    with pytest.raises(DataError, match=r"corpus\.jsonl:2: malformed JSON"):
        load_beir(root)
    (root / "corpus.jsonl").write_text('{"_id": "a", "text": "x"}\n\n{"text": "y"}\n')
    with pytest.raises(DataError, match=r"corpus\.jsonl:3: missing field '_id'"):
        load_beir(root)
    with pytest.raises(DataError, match="no qrels for split 'dev'"):
        load_beir(root, split="dev")
    with pytest.raises(DataError, match="does not exist"):
        load_beir(tmp_path / "nowhere")


@pytest.mark.skipif(not (DATA / "scifact").is_dir(), reason="shared datasets absent")
def test_shared_scifact_splits() -> None:
    test, train = load_beir(DATA / "scifact"), load_beir(DATA / "scifact", split="train")
    assert (len(test.corpus), len(test.queries), len(train.queries)) == (5183, 300, 809)
    assert sum(len(v) for v in test.qrels.values()) == 339
    assert test.warnings == []


def test_trec_run_round_trip_with_config(tmp_path: Path) -> None:
    run = {"q1": {"a": 1.5, "b": 1.5, "c": 0.1 + 0.2}, "q2": {"x": -3.0}}
    path = write_run(run, tmp_path / "r.trec", tag="sys", config={"type": "bm25", "k1": 0.9})
    lines = path.read_text().splitlines()
    assert lines[0] == "q1 Q0 b 1 1.5 sys"  # tie: larger id first, as trec_eval ranks it
    assert read_run(path) == run  # scores round-trip exactly
    assert read_run_config(path) == {"type": "bm25", "k1": 0.9}
    assert read_run_config(write_run(run, tmp_path / "n.trec")) is None


def test_trec_run_duplicates_follow_trec_eval(tmp_path: Path) -> None:
    p = tmp_path / "dup.trec"
    p.write_text("q1 Q0 a 1 2.0 t\nq1 Q0 b 2 1.0 t\nq1 Q0 a 3 3.0 t\n")
    with pytest.raises(DataError, match=r"dup\.trec:3: document 'a' appears twice"):
        read_run(p)
    assert read_run(p, on_duplicate="max")["q1"] == {"a": 3.0, "b": 1.0}
    assert read_run(p, on_duplicate="first")["q1"] == {"a": 2.0, "b": 1.0}
    p.write_text("q1 Q0 a 1 high t\n")
    with pytest.raises(DataError, match=r":1: score 'high'"):
        read_run(p)
    p.write_text("q1 Q0 a 1 t\n")
    with pytest.raises(DataError, match=r":1: expected 6 fields"):
        read_run(p)
    with pytest.raises(ConfigError):
        read_run(p, on_duplicate="min")  # type: ignore[arg-type]


def test_trec_qrels_round_trip(tmp_path: Path) -> None:
    qrels = {"1": {"d1": 2, "d2": 0, "d3": -1}, "2": {"d1": 1}}
    assert read_qrels(write_qrels(qrels, tmp_path / "q.txt")) == qrels
    (tmp_path / "bad.txt").write_text("1 0 d1 1\n1 0 d1 2\n")
    with pytest.raises(DataError, match=r"bad\.txt:2: document 'd1' judged twice"):
        read_qrels(tmp_path / "bad.txt")
    (tmp_path / "bad.txt").write_text("1 0 d1 0.5\n")
    with pytest.raises(DataError, match=r":1: relevance '0.5' is not an integer"):
        read_qrels(tmp_path / "bad.txt")


def _ranking(qid: str, pairs: list[tuple[str, float]]) -> Ranking:
    hits = tuple(Hit(document=Document(id=d, text=d), score=s) for d, s in pairs)
    return Ranking(query=Query(id=qid, text="q"), hits=hits)


def test_run_from_rankings_policies() -> None:
    r = _ranking("q", [("a", 1.0), ("b", 3.0), ("a", 2.0)])
    assert run_from_rankings([r]) == {"q": {"a": 2.0, "b": 3.0}}
    assert run_from_rankings([r], by="rank") == {"q": {"a": 3.0, "b": 2.0}}
    with pytest.raises(ConfigError, match="two rankings"):
        run_from_rankings([r, r])


def test_download_offline_error(tmp_path: Path) -> None:
    with pytest.raises(RagError, match="download the archive by hand|Download the archive"):
        download_beir("scifact", tmp_path, url="http://127.0.0.1:9/scifact.zip", timeout=2)
    with pytest.raises(ConfigError, match="known: "):
        download_beir("not-a-set", tmp_path)
    assert BEIR_MD5["scifact"] == "5f7d1de60b170fc8027bb7898e2efca1"
