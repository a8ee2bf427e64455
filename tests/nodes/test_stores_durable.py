"""Durable indexing: a SIGKILLed ingestion loses no acknowledged document and resumes cleanly."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from rag.core.errors import ConfigError
from retrievers.stores.durable import DurableIndex, ingest_jsonl

ROOT = Path(__file__).resolve().parents[2]
CHILD = ROOT / "tests" / "durable_child.py"
sys.path.insert(0, str(ROOT / "tests"))
from durable_child import hash_encode  # noqa: E402

WORDS = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi pi rho".split()


def write_corpus(path: Path, n: int, seed: int = 0) -> dict[str, str]:
    rng = np.random.default_rng(seed)
    texts = {}
    with open(path, "w", encoding="utf-8") as f:
        for i in range(n):
            words = " ".join(rng.choice(WORDS, 8))
            texts[f"d{i}"] = f"doc{i} {words}"
            f.write(json.dumps({"_id": f"d{i}", "text": texts[f"d{i}"]}) + "\n")
    return texts


def read_acks(path: Path) -> list[str]:
    if not path.exists():
        return []
    ids = []
    for line in path.read_text(encoding="utf-8").split("\n")[:-1]:  # complete lines only
        ids.extend(line.split("\t", 1)[1].split(","))
    return ids


def check_consistent(index_dir: Path, texts: dict[str, str], must_have: list[str]) -> list[str]:
    idx = DurableIndex(index_dir)  # opening removes a crashed batch's orphan files
    ids, vecs, _ = idx.live()
    assert len(ids) == len(set(ids)), "an id is present twice"
    lost = sorted(set(must_have) - set(ids))
    assert not lost, f"acknowledged ids lost: {lost[:5]}"
    expect = hash_encode([texts[i] for i in ids])
    np.testing.assert_allclose(vecs, expect, atol=1e-6)  # every vector is its document's
    named = {f"seg-{s['seq']:06d}.{e}" for s in idx._manifest["segments"] for e in ("npy", "json")}
    assert {p.name for p in index_dir.glob("seg-*")} == named, "orphan or missing segment files"
    store = idx.to_store()
    assert store.count() == len(ids)
    if ids:
        hits = store.search(vecs[:5], 1)
        assert all(h and abs(h[0][1] - 1.0) < 1e-5 for h in hits)
    return ids


def spawn(src: Path, index: Path, acks: Path, delay: float) -> subprocess.Popen:
    cmd = [sys.executable, str(CHILD), str(src), str(index), str(acks), "--batch", "16"]
    return subprocess.Popen([*cmd, "--delay", str(delay)], cwd=ROOT)


def wait_acks(proc: subprocess.Popen, acks: Path, n_lines: int, timeout: float = 15.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if acks.exists() and acks.read_text(encoding="utf-8").count("\n") >= n_lines:
            return
        if proc.poll() is not None:
            pytest.fail(f"child exited early with {proc.returncode}")
        time.sleep(0.005)
    proc.kill()
    pytest.fail("child did not acknowledge batches in time")


def test_sigkill_mid_ingestion_loses_no_acknowledged_document(tmp_path):
    src, index, acks = tmp_path / "corpus.jsonl", tmp_path / "index", tmp_path / "acks.tsv"
    texts = write_corpus(src, 640)
    for kill_after in (4, 12):  # two crashes, the second one in a resumed run
        proc = spawn(src, index, acks, delay=0.02)
        wait_acks(proc, acks, kill_after)
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(timeout=10) == -signal.SIGKILL
        acked = read_acks(acks)
        assert 0 < len(acked) < len(texts), "the kill must land mid-way"
        check_consistent(index, texts, acked)
    proc = spawn(src, index, acks, delay=0.0)
    assert proc.wait(timeout=30) == 0
    ids = check_consistent(index, texts, read_acks(acks))
    assert sorted(ids) == sorted(texts), "resumed ingestion must end with every document once"
    assert DurableIndex(index).cursor(str(src.resolve())) == len(texts)


def test_add_update_delete_by_id_survive_reopen(tmp_path):
    idx = DurableIndex(tmp_path)
    v = np.eye(4, dtype=np.float32)
    idx.add(["a", "b", "c"], v[:3], [{"metadata": {"n": i}} for i in range(3)])
    idx.add(["b"], v[3:4], [{"metadata": {"n": 9}}])  # update b
    idx.delete(["c"])
    idx.add(["d"], v[2:3])
    again = DurableIndex(tmp_path)
    ids, vecs, payloads = again.live()
    assert ids == ["a", "b", "d"]
    np.testing.assert_array_equal(vecs[1], v[3])
    assert payloads[1] == {"metadata": {"n": 9}}
    again.add(["c"], v[0:1])  # re-adding a deleted id brings it back
    assert DurableIndex(tmp_path).live()[0] == ["a", "b", "d", "c"]
    again.compact()
    assert len(list(tmp_path.glob("seg-*.npy"))) == 1
    assert DurableIndex(tmp_path).live()[0] == ["a", "b", "d", "c"]


def test_uncommitted_segment_is_an_orphan_and_is_removed(tmp_path):
    idx = DurableIndex(tmp_path)
    idx.add(["a"], np.ones((1, 3)))
    np.save(tmp_path / "seg-000002.npy", np.ones((1, 3)))  # as if killed before the commit
    (tmp_path / "seg-000002.json").write_text('{"ids": ["x"], "payloads": [{}]}')
    assert DurableIndex(tmp_path).live()[0] == ["a"]
    assert not (tmp_path / "seg-000002.npy").exists()


def test_resume_skips_committed_records_and_dedups_ids_in_a_batch(tmp_path):
    src = tmp_path / "c.jsonl"
    rows = [{"_id": "a", "text": "one"}, {"_id": "b", "text": "two"}, {"_id": "a", "text": "three"}]
    src.write_text("".join(json.dumps(r) + "\n" for r in rows))
    seen: list[list[str]] = []
    idx = DurableIndex(tmp_path / "i")
    def ack(seq: int, ids: list[str]) -> None:
        seen.append(ids)

    assert ingest_jsonl(src, idx, hash_encode, batch_size=8, on_commit=ack) == 3
    assert seen == [["a", "b"], ["a"]]  # the repeated id closed the batch so the later text wins
    ids, vecs, _ = DurableIndex(tmp_path / "i").live()
    assert ids == ["b", "a"]
    np.testing.assert_allclose(vecs[1], hash_encode(["three"])[0])
    seen.clear()
    ingest_jsonl(src, DurableIndex(tmp_path / "i"), hash_encode, on_commit=ack)
    assert seen == []  # nothing left to do


def test_bad_batches_are_rejected(tmp_path):
    idx = DurableIndex(tmp_path)
    with pytest.raises(ConfigError, match="same id twice"):
        idx.add(["a", "a"], np.ones((2, 3)))
    idx.add(["a"], np.ones((1, 3)))
    with pytest.raises(ConfigError, match="dim 4 != index dim 3"):
        idx.add(["b"], np.ones((1, 4)))
