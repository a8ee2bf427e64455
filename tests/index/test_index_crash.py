"""SIGKILL a writer at random moments under mixed add/delete load: every acknowledged document is
present exactly once with its own text, no acknowledged delete comes back, and the index always
opens. ``RAG_KILLS`` sets the number of kills of the slow variants (default 50 for BM25, a fifth
for the BM25 + MiniLM hybrid, a tenth for multi-vector MUVERA)."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rag.pipeline import Pipeline

ROOT = Path(__file__).resolve().parents[2]
CHILD = ROOT / "tests" / "index_child.py"
sys.path.insert(0, str(ROOT / "tests"))
from index_child import text_of  # noqa: E402

ENV = {**os.environ, "PYTHONPATH": str(ROOT)}


def acked(acks: Path) -> tuple[set[str], set[str], set[str]]:
    """Ids whose add was acknowledged, whose delete was, and whose delete was started (it may
    have been committed just before a kill, without its acknowledgement)."""
    ops: dict[str, set[str]] = {"add": set(), "del": set(), "try-del": set()}
    if acks.exists():
        for line in acks.read_text(encoding="utf-8").split("\n")[:-1]:  # complete lines only
            op, ids = line.split("\t")
            ops[op].update(ids.split(","))
    return ops["add"], ops["del"], ops["try-del"]


def check(index: Path, acks: Path) -> int:
    pipe = Pipeline.open(index, read_only=True)  # verifies every file of the generation
    ids = list(pipe.retriever.documents)
    assert len(ids) == len(set(ids)), "a document is present twice"
    added, deleted, started = acked(acks)
    present = set(ids)
    lost = added - deleted - started - present
    assert not lost, f"acknowledged documents lost: {sorted(lost)[:5]}"
    back = deleted & present
    assert not back, f"acknowledged deletes undone: {sorted(back)[:5]}"
    for i in ids:  # no wrong document behind an id
        assert pipe.retriever.documents[i].text == text_of(i)
    for i in sorted(present)[:5]:  # and search finds each by its own words
        assert i in pipe.search(text_of(i), k=len(ids)).ids
    return len(ids)


def run(tmp_path: Path, kind: str, kills: int, seed: int = 0) -> None:
    index, acks = tmp_path / "idx", tmp_path / "acks.tsv"
    assert subprocess.run([sys.executable, str(CHILD), "init", str(index), kind], env=ENV,
                          cwd=ROOT, timeout=300).returncode == 0
    rng = random.Random(seed)
    for n in range(kills):
        start = acks.read_text().count("\n") if acks.exists() else 0
        proc = subprocess.Popen(
            [sys.executable, str(CHILD), "load", str(index), str(acks), str(seed * 1000 + n),
             "100000"], env=ENV, cwd=ROOT,
        )
        end = time.monotonic() + 300
        while time.monotonic() < end and proc.poll() is None:  # let it commit a few writes
            if acks.exists() and acks.read_text().count("\n") >= start + rng.randint(1, 4):
                break
            time.sleep(0.01)
        time.sleep(rng.uniform(0, 0.05))  # then kill it anywhere in the write path
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(timeout=30) == -signal.SIGKILL, "the writer ended on its own"
        check(index, acks)
    added, _, _ = acked(acks)
    assert len(added) > kills  # the load made progress between the kills


def test_random_kills_bm25_small(tmp_path):
    run(tmp_path, "bm25", kills=3)


@pytest.mark.slow
def test_random_kills_bm25_many(tmp_path):
    run(tmp_path, "bm25", kills=int(os.environ.get("RAG_KILLS", "50")), seed=1)


@pytest.mark.slow
def test_random_kills_hybrid_bm25_dense(tmp_path):
    run(tmp_path, "hybrid", kills=int(os.environ.get("RAG_KILLS", "50")) // 5, seed=2)


@pytest.mark.slow
def test_random_kills_multivector_muvera(tmp_path):
    run(tmp_path, "multivector", kills=max(2, int(os.environ.get("RAG_KILLS", "50")) // 10),
        seed=3)
