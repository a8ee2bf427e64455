"""`rag index --workers 2` (rag/ingest/workers.py): the chunks of a folder embedded by two
worker processes, committed by the one writer, give the index that one process gives: the same
chunk ids, the same file cursor, vectors equal to float32 reassociation, the same rankings."""

from __future__ import annotations

import os

import numpy as np
import pytest

from rag.app.cli import main
from rag.ingest.indexing import read_manifest
from rag.pipeline import Pipeline

MOONS = [
    "Saturn has 146 known moons. Titan, its largest moon, has a thick nitrogen atmosphere.",
    "Jupiter is the largest planet in the Solar System, a gas giant with many moons.",
    "Mars has two small moons, Phobos and Deimos. Olympus Mons is the tallest volcano known.",
    "The Hubble Space Telescope was launched into low Earth orbit in 1990 and is still used.",
    "The James Webb Space Telescope observes in the infrared from the L2 point.",
]


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("workers")
    notes = root / "notes"
    notes.mkdir()
    for i, text in enumerate(MOONS * 2):
        (notes / f"note{i}.md").write_text(f"# Note {i}\n\n{text} (copy {i})\n", encoding="utf-8")
    return root


def _index(root, name: str, workers: int) -> str:
    out = str(root / name)
    cwd = os.getcwd()
    os.chdir(root)  # sources are recorded as written: notes/...
    try:
        args = ["index", "notes", "--out", out, "--retriever", "hybrid", "--batch-size", "4"]
        assert main([*args, "--workers", str(workers)]) == 0
    finally:
        os.chdir(cwd)
    return out


@pytest.mark.slow  # two spawned workers load torch and MiniLM: ~1 min on a quiet machine
def test_two_workers_give_the_index_of_one(folder, monkeypatch, capsys) -> None:
    monkeypatch.delenv("RAGNODES_EMBED_CACHE", raising=False)
    one, two = _index(folder, "one", 1), _index(folder, "two", 2)
    assert read_manifest(one) == read_manifest(two)  # the resume cursor: files and chunk ids
    a, b = Pipeline.open(one), Pipeline.open(two)
    try:
        assert sorted(a.retriever.documents) == sorted(b.retriever.documents)
        for q in ("which moon has a nitrogen atmosphere", "infrared telescope", "volcano"):
            ra, rb = a.retriever.retrieve(q, k=5), b.retriever.retrieve(q, k=5)
            # RRF of BM25 (identical) and dense ranks; dense scores agree to 1e-5 (vectors
            # from different batch shapes), so the fused scores agree to that tolerance
            np.testing.assert_allclose(ra.scores, rb.scores, atol=1e-5)
            assert set(ra.ids) == set(rb.ids)
    finally:
        a.close()
        b.close()


def test_workers_is_checked_and_refused_for_a_jsonl_corpus(tmp_path, capsys) -> None:
    corpus = tmp_path / "c.jsonl"
    corpus.write_text('{"_id": "a", "text": "x"}\n', encoding="utf-8")
    assert main(["index", str(corpus), "--out", str(tmp_path / "i"), "--workers", "2"]) == 2
    assert "--workers applies to files and folders" in capsys.readouterr().err


CHILD = """
import sys, time
from rag.ingest.workers import EncodePool
from rag.core.nodes import Node

pool = EncodePool(Node.from_config({"type": "dense"}), 2)
busy = [pool.pool.submit(time.sleep, 300) for _ in range(2)]  # a slice that takes minutes
print("busy", flush=True)
time.sleep(300)
"""


def _children(pid: int) -> set[int]:
    kids: set[int] = set()
    for task in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{task}/children") as f:
            kids |= {int(x) for x in f.read().split()}
    return kids


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ")[-1][0] != "Z"  # a zombie has exited
    except FileNotFoundError:
        return False


@pytest.mark.skipif(not os.path.exists("/proc/self/task"), reason="reads /proc (Linux)")
def test_workers_exit_when_the_parent_is_killed() -> None:
    """A ``rag index --workers 2`` killed with SIGKILL (OOM killer, supervisor) leaves no
    worker behind still encoding its slice: each exits within seconds (rag.ingest.workers
    .exit_with_parent), though its task would run for minutes."""
    import signal
    import subprocess
    import sys
    import time

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    p = subprocess.Popen([sys.executable, "-c", CHILD], stdout=subprocess.PIPE, text=True,
                         env=env)
    try:
        assert p.stdout is not None and p.stdout.readline().strip() == "busy"
        deadline = time.monotonic() + 60
        workers: set[int] = set()
        while len(workers) < 2 and time.monotonic() < deadline:  # spawned on submit
            workers = {c for c in _children(p.pid)
                       if b"spawn_main" in open(f"/proc/{c}/cmdline", "rb").read()}
            time.sleep(0.2)
        assert len(workers) == 2, workers
        time.sleep(2)  # the workers have run their initializer and are in time.sleep(300)
        assert all(_alive(w) for w in workers)
        p.send_signal(signal.SIGKILL)
        p.wait(10)
        deadline = time.monotonic() + 20
        while any(_alive(w) for w in workers) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not any(_alive(w) for w in workers), "orphaned workers still running"
    finally:
        if p.poll() is None:
            p.kill()


def _commit_files(tmp_path, name: str, ahead) -> tuple[list, dict]:  # noqa: ANN001
    """Five files of two chunks through FileCommits (batches of 4 chunks), every commit's
    chunk ids and cursor files recorded by a wrapper around the real ``Pipeline.index``."""
    from rag.core.types import Document
    from rag.ingest import Chunker
    from rag.ingest.indexing import CURSOR, FileCommits, IndexReport, _open_or_create
    from retrievers import BM25Retriever

    pipe = _open_or_create(tmp_path / name, lambda: Pipeline(retriever=BM25Retriever()))
    landed: list[tuple[list[str], list[str]]] = []
    real = pipe.index

    def index(batch, cursor=None):  # noqa: ANN001, ANN202
        assert cursor is not None and cursor[0] == CURSOR
        landed.append(([d.id for d in batch], sorted(cursor[1]["files"])))
        return real(batch, cursor=cursor)

    pipe.index = index
    commits = FileCommits(pipe, None, Chunker(contextual=False), None, 4, IndexReport(),
                          ahead=ahead)
    commits.start({f"f{i}.md": f"sha{i}" for i in range(5)})
    for i in range(5):
        parts = [Document(id=f"f{i}#{j}", text=f"file {i} part {j} moons") for j in range(2)]
        commits.add(f"f{i}.md", parts)
    commits.finish()
    cursor = pipe.cursor(CURSOR)
    pipe.close()
    return landed, cursor


def test_batches_encoded_ahead_land_in_order_each_with_its_own_cursor(tmp_path) -> None:
    """With ``ahead`` (--workers), a sealed batch starts encoding at once and lands after the
    next one is sealed: the parent chunks and commits while the workers encode. The commits
    are those of the plain loop: same batches, same order, each cursor naming exactly the files
    committed so far (a run killed between two commits resumes from the right files)."""
    events: list[tuple[str, list[str]]] = []

    def ahead(batch):  # noqa: ANN001, ANN202
        ids = [d.id for d in batch]
        events.append(("sealed", ids))
        return lambda: events.append(("ready", ids))

    landed, cursor = _commit_files(tmp_path, "ahead", ahead)
    plain, plain_cursor = _commit_files(tmp_path, "plain", None)
    assert landed == plain and cursor == plain_cursor
    assert [ids for ids, _ in landed] == [
        ["f0#0", "f0#1", "f1#0", "f1#1"], ["f2#0", "f2#1", "f3#0", "f3#1"], ["f4#0", "f4#1"]
    ]
    assert [files for _, files in landed] == [
        ["f0.md", "f1.md"], ["f0.md", "f1.md", "f2.md", "f3.md"], [f"f{i}.md" for i in range(5)]
    ]
    first, second, third = (ids for ids, _ in landed)
    assert events == [  # batch n is ready (waited for) only after batch n + 1 was sealed
        ("sealed", first), ("sealed", second), ("ready", first),
        ("sealed", third), ("ready", second), ("ready", third),
    ]
