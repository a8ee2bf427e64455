"""The index layer (rag.index): documents stored once, verified on open, atomic commits, one
writer, validation at the edge, resumable `rag index`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from rag.cli import demo_corpus_path, main
from rag.errors import ConfigError, IndexCorruptError
from rag.index import IndexFolder
from rag.persist import read_documents
from rag.pipeline import Pipeline
from retrievers import BM25Retriever

ROOT = Path(__file__).resolve().parents[1]
CHILD = ROOT / "tests" / "index_child.py"
QUERY = "largest planet"


@pytest.fixture(scope="module")
def demo_docs():
    return read_documents(demo_corpus_path())


def child(*args: str, crash: str | None = None, timeout: float = 120) -> Any:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("RAG_CRASH_AT", None)
    if crash:
        env["RAG_CRASH_AT"] = crash
    return subprocess.run(
        [sys.executable, str(CHILD), *args], env=env, capture_output=True, text=True,
        timeout=timeout, cwd=ROOT,
    )


def bm25_index(path: Path, docs) -> Path:  # type: ignore[no-untyped-def]
    Pipeline(retriever=BM25Retriever()).index(docs).save(path)
    return path


# -- documents stored once ------------------------------------------------------------------------
def test_hybrid_index_stores_the_corpus_once(tmp_path, demo_docs):
    from retrievers import HybridRetriever

    # two lexical children keep this cheap; the dense store is covered by the next tests
    hybrid = HybridRetriever([BM25Retriever(), BM25Retriever(fields="text", k1=1.2)])
    pipe = Pipeline(retriever=hybrid).index(demo_docs[:10])
    before = pipe.search(QUERY).ids
    pipe.save(tmp_path / "idx")
    files = [p for p in (tmp_path / "idx").rglob("*") if p.is_file()]
    probe = demo_docs[3].text[:40].encode()
    holders = [p.name for p in files if probe in p.read_bytes()]
    assert len(holders) == 1 and holders[0].endswith(".docs"), holders
    back = Pipeline.open(tmp_path / "idx")
    assert back.search(QUERY).ids == before
    # every child reads the one store: no per-child copy of the corpus in memory
    store = back.retriever.documents
    assert all(r.documents is store for r in back.retriever.retrievers)
    assert type(store).__name__ == "DocumentStore"


# -- corruption -----------------------------------------------------------------------------------
def _damage(p: Path, how: str) -> None:
    data = p.read_bytes()
    if how == "truncated":
        p.write_bytes(data[: len(data) // 2])
    elif how == "emptied":
        p.write_bytes(b"")
    elif how == "rotated":
        p.write_bytes(data[7:] + data[:7])
    elif how == "deleted":
        p.unlink()


FILES = {
    "manifest": lambda d: d / "manifest.json",
    "documents": lambda d: next(d.glob("*.docs")),
    "bm25": lambda d: next(d.glob("*.bm25")),
}


@pytest.mark.parametrize("how", ["truncated", "emptied", "rotated", "deleted"])
@pytest.mark.parametrize("which", sorted(FILES))
def test_damaged_file_is_one_line_naming_it_and_the_fix(tmp_path, demo_docs, which, how, capsys):
    idx = bm25_index(tmp_path / "idx", demo_docs)
    target = FILES[which](idx)
    _damage(target, how)
    with pytest.raises(IndexCorruptError) as e:
        Pipeline.open(idx)
    msg = str(e.value)
    assert "\n" not in msg and target.name in msg
    assert ("--repair" in msg) if which != "manifest" else ("re-ingest" in msg)
    assert main(["search", str(idx), QUERY]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and target.name in err and "Traceback" not in err


def test_repair_rebuilds_state_and_reports_lost_documents(tmp_path, demo_docs, capsys):
    idx = bm25_index(tmp_path / "idx", demo_docs[:12])
    Pipeline.open(idx).index(demo_docs[12:])  # a second document segment
    want = Pipeline.open(idx).search(QUERY, k=30).ids
    _damage(FILES["bm25"](idx), "truncated")
    assert main(["index", "--repair", str(idx)]) == 0
    assert Pipeline.open(idx).search(QUERY, k=30).ids == want  # state rebuilt from the documents
    Pipeline.open(idx).index([{"id": "late", "text": "a later segment"}])
    seg = sorted(idx.glob("*.docs"))[0]
    _damage(seg, "emptied")
    assert main(["index", "--repair", str(idx)]) == 0
    assert "lost" in capsys.readouterr().out
    back = Pipeline.open(idx)
    assert list(back.retriever.documents) == ["late"]


# -- atomic commits -------------------------------------------------------------------------------
SLOW = pytest.mark.slow


@pytest.mark.parametrize(
    "point",
    [
        pytest.param("in-file", marks=SLOW),
        "after-docs",
        pytest.param("after-state", marks=SLOW),
        pytest.param("before-fsync", marks=SLOW),
        "before-manifest",
        "after-manifest",
    ],
)
def test_killed_commit_leaves_a_readable_generation(tmp_path, demo_docs, point):
    idx = bm25_index(tmp_path / "idx", demo_docs)
    r = child("add", str(idx), "new-doc", "Jupiter largest planet giant", crash=point)
    assert r.returncode == -signal.SIGKILL and "acked" not in r.stdout
    back = Pipeline.open(idx)  # verifies every file of the generation it reads
    ids = list(back.retriever.documents)
    assert len(ids) == len(set(ids))
    committed = point == "after-manifest"  # killed after the commit point, before the ack
    assert ("new-doc" in ids) == committed
    assert len(ids) == len(demo_docs) + committed
    hits = back.search(QUERY, k=5)
    assert all(h.document.text == back.retriever.documents[h.id].text for h in hits.hits)
    # the next writer removes the crashed commit's leftovers and writes on
    back.index([{"id": "after", "text": "after the crash"}])
    back.close()
    named = set(IndexFolder(idx).read_manifest()["files"])
    on_disk = {p.relative_to(idx).as_posix() for p in idx.rglob("*") if p.is_file()}
    assert on_disk - named == {"manifest.json", "writer.lock"}


def test_old_generations_are_removed_after_commit(tmp_path, demo_docs):
    idx = bm25_index(tmp_path / "idx", demo_docs[:5])
    pipe = Pipeline.open(idx)
    for d in demo_docs[5:8]:
        pipe.index([d])
    pipe.delete([demo_docs[0].id])
    pipe.compact()
    pipe.close()
    assert len(list(idx.glob("*.docs"))) == 1
    assert len(Pipeline.open(idx).retriever) == 7


def test_update_delete_readd_and_compact_survive_reopen(tmp_path):
    # (what retrievers/stores/durable.py proved for its own segments, on the one index layer:
    # ids are upserts, deletes are tombstones, a deleted id can come back, compaction keeps all)
    docs = [{"id": i, "text": f"{i} {w}"} for i, w in
            (("a", "apple orchard"), ("b", "banana grove"), ("c", "cherry tree"))]
    idx = tmp_path / "idx"
    pipe = Pipeline(retriever=BM25Retriever())
    pipe.index(docs).save(idx)
    pipe.close()
    pipe = Pipeline.open(idx)
    pipe.index([{"id": "b", "text": "b mango plantation"}])  # update b
    pipe.delete(["c"])
    pipe.index([{"id": "d", "text": "d durian stall"}])
    pipe.close()

    def state(path: Path) -> tuple[dict[str, str], list[str]]:
        back = Pipeline.open(path)
        try:
            texts = {i: d.text for i, d in back.retriever.documents.items()}
            return texts, back.search("mango banana cherry", k=5).ids
        finally:
            back.close()

    texts, hits = state(idx)
    assert texts == {"a": "a apple orchard", "b": "b mango plantation", "d": "d durian stall"}
    assert hits == ["b"]  # the old text of b and the deleted c are gone from the postings too
    pipe = Pipeline.open(idx)
    pipe.index([{"id": "c", "text": "c cherry blossom"}])  # a deleted id comes back
    pipe.compact()
    pipe.close()
    texts, hits = state(idx)
    assert texts["c"] == "c cherry blossom" and sorted(texts) == ["a", "b", "c", "d"]
    assert sorted(hits) == ["b", "c"]
    assert len(list(idx.glob("*.docs"))) == 1  # compacted: one document segment


# -- one writer, many readers ----------------------------------------------------------------------
def test_second_writer_gets_one_line_error(tmp_path, demo_docs, capsys):
    idx = bm25_index(tmp_path / "idx", demo_docs)
    holder = Pipeline.open(idx)
    holder.index([{"id": "mine", "text": "held by this process"}])  # takes the lock
    r = subprocess.run(
        [sys.executable, "-m", "rag.cli", "index", "--out", str(idx), "--delete", "mine"],
        env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, cwd=ROOT,
    )
    assert r.returncode == 2 and r.stderr.count("\n") == 1
    assert "open for writing by another process" in r.stderr
    holder.close()
    assert main(["index", "--out", str(idx), "--delete", "mine"]) == 0


def test_reader_in_another_process_sees_the_writers_results(tmp_path, demo_docs):
    idx = bm25_index(tmp_path / "idx", demo_docs)
    reader = Pipeline.open(idx, read_only=True)
    assert child("add", str(idx), "pluto-x", "Pluto dwarf planet largest Kuiper").returncode == 0
    assert "pluto-x" not in reader.retriever.documents  # a consistent, older generation
    assert reader.refresh() and "pluto-x" in reader.search("Pluto dwarf planet", k=3).ids
    with pytest.raises(ConfigError, match="read-only"):
        reader.index([{"id": "x", "text": "y"}])


@pytest.mark.slow  # MiniLM in two processes
@pytest.mark.parametrize("store", ["exact", "qdrant-local"])
def test_dense_index_written_by_another_process_gives_its_results(tmp_path, store):
    extra = [str(tmp_path / "qdrant")] if store == "qdrant-local" else []
    r = child("dense", str(tmp_path / "idx"), *extra)
    assert r.returncode == 0, r.stderr
    theirs = json.loads(r.stdout)
    mine = Pipeline.open(tmp_path / "idx", read_only=True)
    from index_child import QUERIES

    ours = [[[h.id, h.score] for h in mine.search(q, k=5).hits] for q in QUERIES]
    assert ours == theirs  # ids and scores exactly


# -- validation at the edge ------------------------------------------------------------------------
def deep(n: int) -> dict:
    d: dict = {}
    for _ in range(n):
        d = {"x": d}
    return d


@pytest.mark.parametrize(
    "doc, needle",
    [
        ({"id": "", "text": "t"}, "id is empty"),
        ({"id": "x" * 600, "text": "t"}, "more than 512"),
        ({"id": "d", "text": "t", "metadata": deep(600)}, r"nested \d+ deep"),
        ({"id": "d", "text": "t", "metadata": {"blob": "x" * 70_000}}, "bytes as JSON"),
    ],
)
def test_unstorable_documents_are_rejected_before_anything_is_applied(tmp_path, demo_docs, doc,
                                                                      needle):
    idx = bm25_index(tmp_path / "idx", demo_docs)
    pipe = Pipeline.open(idx)
    gen = IndexFolder(idx).read_manifest()["generation"]
    with pytest.raises(ConfigError, match=needle):
        pipe.index([{"id": "ok", "text": "fine"}, doc])
    assert "ok" not in pipe.retriever.documents and len(pipe.retriever) == len(demo_docs)
    assert IndexFolder(idx).read_manifest()["generation"] == gen


def test_server_commits_by_default_and_rejects_unstorable_documents(tmp_path, demo_docs):
    from fastapi.testclient import TestClient

    from rag.server import create_app

    idx = bm25_index(tmp_path / "idx", demo_docs)
    auth = {"X-API-Key": "k"}
    client = TestClient(create_app(Pipeline.open(idx), api_keys=["k"]))
    bad = {"documents": [{"id": "d", "text": "t", "metadata": deep(600)}]}
    assert client.post("/documents", json=bad, headers=auth).status_code == 422
    r = client.post("/documents", json={"documents": [{"id": "ceres", "text": "Ceres"}]},
                    headers=auth)
    assert r.status_code == 200
    assert "ceres" in Pipeline.open(idx).retriever.documents  # durable once acknowledged
    assert client.request("DELETE", "/documents", json={"ids": ["ceres"]},
                          headers=auth).json()["changed"] == 1
    assert "ceres" not in Pipeline.open(idx).retriever.documents
    ro = TestClient(create_app(Pipeline.open(idx, read_only=True), api_keys=["k"],
                               read_only=True))
    r = ro.post("/documents", json={"documents": [{"id": "x", "text": "y"}]}, headers=auth)
    assert r.status_code == 403 and "read-only" in r.json()["message"]
    # a read-only replica follows the writer's commits
    client.post("/documents", json={"documents": [{"id": "vesta", "text": "Vesta asteroid"}]},
                headers=auth)
    r = ro.post("/search", json={"query": "Vesta asteroid", "k": 3}, headers=auth)
    assert r.json()["hits"][0]["document"]["id"] == "vesta"


# -- rag index ------------------------------------------------------------------------------------
def test_rag_index_refuses_to_replace_and_appends_deletes_overwrites(tmp_path, capsys):
    corpus, idx = str(demo_corpus_path()), str(tmp_path / "idx")
    assert main(["index", corpus, "--out", idx, "--retriever", "bm25"]) == 0
    assert main(["index", corpus, "--out", idx, "--retriever", "bm25"]) == 2
    assert "--overwrite" in capsys.readouterr().err
    extra = tmp_path / "extra.jsonl"
    extra.write_text(json.dumps({"_id": "vesta", "text": "Vesta asteroid"}) + "\n")
    assert main(["index", str(extra), "--out", idx, "--append"]) == 0
    assert "vesta" in Pipeline.open(idx).retriever.documents
    assert main(["index", "--out", idx, "--delete", "vesta"]) == 0
    assert "vesta" not in Pipeline.open(idx).retriever.documents
    assert main(["index", str(extra), "--out", idx, "--overwrite", "--retriever", "bm25"]) == 0
    assert list(Pipeline.open(idx).retriever.documents) == ["vesta"]
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"_id": "b", "text": "t", "metadata": deep(40)}) + "\n")
    assert main(["index", str(bad), "--out", str(tmp_path / "i2")]) == 2
    assert "nested 41 deep" in capsys.readouterr().err
    assert not (tmp_path / "i2").exists()  # rejected before anything was written


def test_interrupted_rag_index_resumes_after_its_last_committed_batch(tmp_path):
    corpus, idx = str(demo_corpus_path()), tmp_path / "idx"
    cmd = [sys.executable, "-m", "rag.cli", "index", corpus, "--out", str(idx), "--retriever",
           "bm25", "--batch-size", "5"]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "RAG_CRASH_AT": "after-manifest:3"}
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == -signal.SIGKILL
    body = IndexFolder(idx).read_manifest()
    assert list(body["cursors"].values()) == [10]  # config + two batches committed
    env.pop("RAG_CRASH_AT")
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0 and "resuming" in r.stdout and "10 of 24" in r.stdout
    ids = list(Pipeline.open(idx).retriever.documents)
    assert len(ids) == len(set(ids)) == 24


@pytest.mark.slow  # qdrant-client in two processes
def test_qdrant_local_folder_held_by_another_process_is_one_line(tmp_path):
    from rag.errors import IndexLockedError
    from retrievers import QdrantStore

    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, str(CHILD), "qdrant", str(tmp_path / "q")], env=env,
                            stdout=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        assert proc.stdout.readline().strip() == "open"
        with pytest.raises(IndexLockedError) as e:
            QdrantStore(path=str(tmp_path / "q")).client.get_collections()
        assert "\n" not in str(e.value) and "another process" in str(e.value)
    finally:
        proc.kill()
        proc.wait()


def test_dense_vectors_append_as_segments_and_reopen_exactly(tmp_path, demo_docs):
    from retrievers import DenseRetriever

    pipe = Pipeline(retriever=DenseRetriever()).index(demo_docs[:12])
    pipe.save(tmp_path / "idx")
    first = {p.name for p in (tmp_path / "idx").glob("*.vec")}
    pipe.index(demo_docs[12:])
    pipe.delete([demo_docs[0].id])
    pipe.index([demo_docs[5].model_copy(update={"text": "replaced: rings of ice"})])
    vecs = {p.name for p in (tmp_path / "idx").glob("*.vec")}
    assert first < vecs and len(vecs) == 3  # appended; the first segment was not rewritten
    back = Pipeline.open(tmp_path / "idx")
    for q in ["largest planet", "rings of ice", "moon with an atmosphere"]:
        a, b = pipe.search(q, k=8), back.search(q, k=8)
        assert a.ids == b.ids and a.scores == b.scores
