"""``rag index --engine ray`` on a real local Ray cluster (a head and one worker node, inside
network + PID namespaces: tests/ray_cluster.py), against single-process ``rag index``.

Vectors are compared within a tolerance derived from the computation, not bit for bit: a text's
MiniLM vector depends on the padding of the batch it was encoded in (another GEMM blocking, so
fp32 sums in another order). The vector is a mean over at most 256 token vectors, normalised;
a reordered fp32 sum of n terms of magnitude <= 1 moves by a few ulps x n, so components agree
to ``VEC_TOL = 4 * 2**-24 * 256`` (6.1e-5) and cosine scores (a dot over 384 dimensions) to
``SCORE_TOL = 4 * 2**-24 * 384`` (9.2e-5). Measured here: 8.9e-8 at most (1.5 ulps of 1.0).
Rankings are compared by id exactly where neighbouring scores differ by more than the
tolerance, and as sets inside near-ties. Chunk ids, documents, manifests and BM25 (computed
in the single writer) are compared exactly.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import SHARED
from ingest_fixtures import make_folder
from ray_cluster import PORT, run_in_cluster, unshare_reason

from rag.app.cli import main
from rag.ingest.indexing import read_manifest

VEC_TOL = 4 * 2**-24 * 256
SCORE_TOL = 4 * 2**-24 * 384
WORDS = "alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike".split()
REPORTS = 2  # scifact-reports files in the default tier (~16 chunks each), if ../shared exists
QUERIES = [
    "charlie record",
    "File 7 part 2",
    "largest planet",
    "Hubble telescope launch",
    "vitamin D deficiency and bone density",  # scifact-reports
]


def _many(folder: Path, n: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        body = "\n\n".join(
            f"## Part {j}\n\nFile {i} part {j}: the {WORDS[(i + j) % len(WORDS)]} record "
            + " ".join(WORDS[(i * j + t) % len(WORDS)] for t in range(40))
            for j in range(3)
        )
        (folder / f"f{i:02d}.md").write_text(f"# File {i}\n\n{body}\n")


def _rag(*args: str) -> list[str]:
    return [sys.executable, "-m", "rag.app.cli", "index", *args]


def _ray(*args: str) -> list[str]:
    return _rag(*args, "--engine", "ray", "--ray-address", f"127.0.0.1:{PORT}")


def _qdrant_yaml(root: Path, name: str) -> Path:
    p = root / f"{name}.yaml"
    p.write_text(f"type: qdrant_hybrid\ncollection: docs\npath: {root / name}\n")
    return p


def assert_same_ranking(a, b, tol: float = SCORE_TOL) -> None:  # type: ignore[no-untyped-def]
    """Same scores within ``tol``; same ids, except inside near-ties (compared as sets)."""
    sa, sb = [h.score for h in a.hits], [h.score for h in b.hits]
    assert len(sa) == len(sb) and np.allclose(sa, sb, rtol=0, atol=tol)
    i = 0
    while i < len(sb):  # blocks of scores within tol of their neighbour
        j = i + 1
        while j < len(sb) and abs(sb[j - 1] - sb[j]) <= tol:
            j += 1
        if j < len(sb) or i == 0 or abs(sb[i - 1] - sb[i]) > tol:
            assert {h.id for h in a.hits[i:j]} == {h.id for h in b.hits[i:j]}
        i = j


def _dense(retriever):  # type: ignore[no-untyped-def]
    for child in getattr(retriever, "retrievers", [retriever]):
        if hasattr(child, "store"):
            return child
    raise AssertionError("no dense retriever")


def assert_same_folder(got: Path, want: Path, queries: list[str] = QUERIES) -> None:
    from rag.pipeline import Pipeline

    a, b = Pipeline.open(got), Pipeline.open(want)
    da, db = a.retriever.documents, b.retriever.documents
    assert list(da) == list(db)  # the same chunk ids, in the same order
    assert all(da[i] == db[i] for i in db)  # text, title, metadata (spans, sha256, headings)
    assert read_manifest(got) == read_manifest(want)  # the file cursor
    ids = list(db)
    va, vb = _dense(a.retriever).store.vectors(ids), _dense(b.retriever).store.vectors(ids)
    assert np.abs(va - vb).max() <= VEC_TOL
    for q in queries:
        assert_same_ranking(a.search(q, k=10), b.search(q, k=10))
        assert_same_ranking(
            _dense(a.retriever).retrieve(q, k=10), _dense(b.retriever).retrieve(q, 10)
        )


def assert_same_collection(got: Path, want: Path, queries: list[str] = QUERIES) -> None:
    from rag.pipeline import Pipeline

    a, b = Pipeline.open(got), Pipeline.open(want)
    assert read_manifest(got) == read_manifest(want)
    pa, pb = (
        {p.id: p for p in r.retriever.client.scroll("docs", limit=10_000, with_vectors=True)[0]}
        for r in (a, b)
    )
    assert sorted(pa) == sorted(pb) and len(pa) > 0
    for pid, p in pb.items():
        q = pa[pid]
        assert q.payload == p.payload  # the document, BM25 length
        assert q.vector["bm25"] == p.vector["bm25"]  # computed by the one writer: exact
        assert np.abs(np.array(q.vector["dense"]) - np.array(p.vector["dense"])).max() <= VEC_TOL
    meta = [r.retriever.client.get_collection("docs").config.metadata for r in (a, b)]
    assert meta[0] == meta[1]  # BM25 statistics
    for q in queries:
        assert_same_ranking(a.search(q, k=10), b.search(q, k=10))
    for r in (a, b):
        r.retriever.close()


@pytest.fixture(scope="module")
def small_runs(tmp_path_factory):
    """One cluster, three runs over a self-made folder (5 formats, 5 bad files, 10 generated
    Markdown files): hybrid into a folder with an embed actor SIGKILLed mid-run; into Qdrant."""
    reason = unshare_reason()
    if reason:
        pytest.skip(reason)
    root = tmp_path_factory.mktemp("ray-ingest")
    notes = make_folder(root)
    _many(notes / "many", 10)
    reports = SHARED / "scifact-reports" / "docs"
    for f in sorted(reports.glob("*.md"))[:REPORTS] if reports.is_dir() else []:
        (notes / "reports").mkdir(exist_ok=True)  # a few real long documents when present
        (notes / "reports" / f.name).write_bytes(f.read_bytes())
    steps = [
        {
            "argv": _ray(str(notes), "--out", str(root / "ray"), "--batch-size", "12",
                         "--ray-embed-batch", "4"),
            "kill": {"after": 8, "match": "MapBatches(Embedder)"},
        },
        {"argv": _ray(str(notes), "--out", str(root / "ray-q"), "--config",
                      str(_qdrant_yaml(root, "qdrant-ray")), "--batch-size", "12")},
    ]  # fmt: skip
    return root, notes, run_in_cluster(steps)["steps"]


def test_a_killed_embed_actor_still_gives_the_index_of_one_process(small_runs, capsys):
    root, notes, (run, _) = small_runs
    assert run["rc"] == 0, run["stderr"][-3000:]
    assert run["killed_pid"] is not None  # an embed actor was SIGKILLed mid-run
    warned = [ln for ln in run["stderr"].splitlines() if ln.startswith("warning: skipped")]
    assert len(warned) == 5  # bad files: one line each, the run went on
    good = 15 + len(list((notes / "reports").glob("*.md")))
    assert f"files: {good} new, 0 changed, 0 unchanged, 0 removed" in run["stdout"]
    progress = [ln for ln in run["stderr"].splitlines() if ln.startswith("progress:")]
    assert progress[-1].startswith(f"progress: files {good + 5}/{good + 5} loaded, chunks ")
    assert main(["index", str(notes), "--out", str(root / "local"), "--batch-size", "12"]) == 0
    assert_same_folder(root / "ray", root / "local")
    n = len(read_manifest(root / "ray")["files"])
    assert n == good and f"written {sum(1 for _ in _chunks(root / 'ray'))}" in progress[-1]


def _chunks(index: Path) -> list[str]:
    return [c for f in read_manifest(index)["files"].values() for c in f["chunks"]]


def test_into_qdrant_equals_the_qdrant_hybrid_path(small_runs):
    root, notes, (_, run) = small_runs
    assert run["rc"] == 0, run["stderr"][-3000:]
    local = _qdrant_yaml(root, "qdrant-local")
    args = ["index", str(notes), "--out", str(root / "local-q"), "--config", str(local)]
    assert main([*args, "--batch-size", "12"]) == 0
    assert_same_collection(root / "ray-q", root / "local-q")


def test_without_ray_one_line_names_the_extra(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # as if not installed: import raises
    (tmp_path / "a.md").write_text("# A\n\nSome text.\n")
    args = ["index", str(tmp_path / "a.md"), "--out", str(tmp_path / "idx"), "--engine", "ray"]
    assert main([*args, "--retriever", "bm25"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and 'pip install "ragnodes[ray]"' in err


def test_an_unreachable_cluster_is_one_line_and_writes_nothing(tmp_path, capsys):
    pytest.importorskip("ray", reason='ray is not installed (pip install "ragnodes[ray]")')
    (tmp_path / "a.md").write_text("# A\n\nSome text.\n")
    args = ["index", str(tmp_path / "a.md"), "--out", str(tmp_path / "idx"), "--engine", "ray"]
    assert main([*args, "--retriever", "bm25", "--ray-address", "127.0.0.1:1"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: cannot reach the Ray cluster at '127.0.0.1:1'")
    assert not (tmp_path / "idx").exists()


@pytest.mark.slow
def test_scifact_reports_on_the_cluster_and_a_rerun_after_a_driver_crash(tmp_path):
    """6 scifact-reports files (~100 chunks): hybrid into a folder and into Qdrant equal one
    process; a driver SIGKILLed in its second batch's commit, rerun, completes the index
    without duplicates."""
    reason = unshare_reason()
    if reason:
        pytest.skip(reason)
    docs = SHARED / "scifact-reports" / "docs"
    if not docs.is_dir():
        pytest.skip(f"shared dataset scifact-reports not found at {docs}")
    src = tmp_path / "reports"
    src.mkdir()
    for f in sorted(docs.glob("*.md"))[:6]:
        (src / f.name).write_bytes(f.read_bytes())
    from rag.index.persist import read_documents

    claims = [q.text for q in read_documents(docs.parent / "queries.jsonl")[:20]]
    crash = {"RAG_CRASH_AT": "after-state:3"}  # 1: the new folder, 2: the first batch
    steps = [
        {"argv": _ray(str(src), "--out", str(tmp_path / "ray"), "--batch-size", "50")},
        {"argv": _ray(str(src), "--out", str(tmp_path / "ray-q"), "--batch-size", "50",
                      "--config", str(_qdrant_yaml(tmp_path, "qdrant-ray")))},
        {"argv": _ray(str(src), "--out", str(tmp_path / "crash"), "--batch-size", "50"),
         "env": crash},
        {"argv": _ray(str(src), "--out", str(tmp_path / "crash"), "--batch-size", "50")},
    ]  # fmt: skip
    runs = run_in_cluster(steps, timeout=3600)["steps"]
    assert [r["rc"] for r in runs] == [0, 0, -9, 0], runs[-1]["stderr"][-3000:]
    done = re.search(r"files: (\d+) new, 0 changed, (\d+) unchanged", runs[3]["stdout"])
    assert done is not None and int(done.group(2)) > 0 and int(done.group(1)) > 0
    assert main(["index", str(src), "--out", str(tmp_path / "local"), "--batch-size", "50"]) == 0
    assert_same_folder(tmp_path / "ray", tmp_path / "local", claims)
    assert_same_folder(tmp_path / "crash", tmp_path / "local", claims)  # every chunk once
    local = _qdrant_yaml(tmp_path, "qdrant-local")
    args = ["index", str(src), "--out", str(tmp_path / "local-q"), "--config", str(local)]
    assert main([*args, "--batch-size", "50"]) == 0
    assert_same_collection(tmp_path / "ray-q", tmp_path / "local-q", claims)
