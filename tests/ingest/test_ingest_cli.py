"""End to end: `rag index` on a folder of .md, .pdf, .docx, .html, .txt and broken files, then
`rag ask` with the real SmolLM2 citing `path#section`; incremental re-indexing."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from ingest_fixtures import MD, make_folder

from rag.app.cli import main
from rag.ingest.indexing import read_manifest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def indexed(tmp_path_factory):
    root = tmp_path_factory.mktemp("ingest-cli")
    notes = make_folder(root)
    cwd = os.getcwd()
    os.chdir(root)  # sources are recorded as written on the command line: notes/...
    try:
        yield root, notes
    finally:
        os.chdir(cwd)


def test_index_folder_then_ask_cites_path_and_section(indexed, capsys, smollm):
    root, notes = indexed
    assert main(["index", "notes", "--out", "idx"]) == 0
    out, err = capsys.readouterr()
    assert "files: 5 new, 0 changed, 0 unchanged, 0 removed" in out
    assert "skipped 5 bad files" in out and "ignored 1 files" in out
    assert "0 of 8 texts are longer than the encoder's max_length (256 tokens)" in out
    warned = [ln for ln in err.splitlines() if ln.startswith("warning: skipped")]
    assert len(warned) == 5 and any("notes/locked.pdf: encrypted PDF" in w for w in warned)
    manifest = read_manifest(root / "idx")  # committed with the chunks, as the index's cursor
    assert not (root / "idx" / "ingest.json").exists()
    assert manifest["files"]["notes/planets.md"]["chunks"] == ["planets.md#0", "planets.md#1"]

    from rag.pipeline import Pipeline

    pipe = Pipeline.open(root / "idx")
    pipe.generator = smollm
    pipe.k = 2
    answer = pipe.ask("Which planet is the largest in the Solar System?")
    assert answer.contexts[0].id.startswith("planets.md#0")
    (cite,) = [c for c in answer.citations if c.marker == 1]
    assert cite.locator == "notes/planets.md#Jupiter" and cite.span is not None
    assert cite.judge == "lexical" and cite.support is not None
    src = (notes / "planets.md").read_text()
    assert "Jupiter is the largest planet" in src[cite.span[0] : cite.span[1]]
    # the same through the CLI (the answer prints its citations as path#section)
    assert (
        main(
            [
                "ask",
                "idx",
                "Which planet is the largest in the Solar System?",
                "-k",
                "2",
                "--max-new-tokens",
                "48",
            ]
        )
        == 0
    )
    assert "notes/planets.md#Jupiter" in capsys.readouterr().out


def test_reindex_only_touches_changed_files(indexed, capsys):
    root, notes = indexed
    if read_manifest(root / "idx") is None:
        assert main(["index", "notes", "--out", "idx"]) == 0
    assert main(["index", "notes", "--out", "idx"]) == 0
    assert "files: 0 new, 0 changed, 5 unchanged, 0 removed; 0 chunks added, 0 removed" in (
        capsys.readouterr().out
    )
    (notes / "planets.md").write_text(MD.replace("gas giant", "huge gas giant"))
    (notes / "sub" / "saturn.txt").unlink()
    (notes / "new.md").write_text("# Venus\n\nVenus is the hottest planet.\n")
    assert main(["index", "notes", "--out", "idx", "--exclude", "*.pdf"]) == 0
    out = capsys.readouterr().out
    # moon.pdf excluded now: removed with saturn.txt; planets.md changed; new.md new
    assert "files: 1 new, 1 changed, 2 unchanged, 2 removed" in out
    from rag.pipeline import Pipeline

    ids = set(Pipeline.open(root / "idx").retriever.documents)
    assert "new.md#0" in ids and not any(i.startswith(("sub/saturn.txt", "moon.pdf")) for i in ids)
    assert "huge gas giant" in " ".join(
        d.text
        for i, d in Pipeline.open(root / "idx").retriever.documents.items()
        if i.startswith("planets.md")
    )


def test_strict_turns_bad_files_into_an_error(indexed, capsys):
    root, _ = indexed
    assert main(["index", "notes", "--out", "idx-strict", "--strict", "--retriever", "bm25"]) == 2
    assert "--strict" in capsys.readouterr().err


def test_chunker_from_yaml_and_a_changed_chunker_rechunks_everything(indexed, capsys):
    root, _ = indexed
    (root / "chunker.yaml").write_text("type: chunker\nchunk_size: 40\nchunk_overlap: 0\n")
    args = ["index", "notes", "--out", "idx-yaml", "--retriever", "bm25"]
    assert main([*args, "--chunker", "chunker.yaml"]) == 0
    manifest = read_manifest(root / "idx-yaml")
    assert manifest["chunker"]["chunk_size"] == 40
    capsys.readouterr()
    assert main([*args, "--chunk-size", "80"]) == 0
    out = capsys.readouterr().out
    assert "0 new, " in out and " changed, 0 unchanged" in out


def _many_files(root: Path, n: int) -> Path:
    folder = root / "many"
    folder.mkdir(exist_ok=True)
    for i in range(n):
        body = "\n\n".join(
            f"## Part {j}\n\nFile {i} part {j}: the {WORDS[(i + j) % len(WORDS)]} record "
            + " ".join(WORDS[(i * j + t) % len(WORDS)] for t in range(40))
            for j in range(3)
        )
        (folder / f"f{i:02d}.md").write_text(f"# File {i}\n\n{body}\n")
    return folder


WORDS = "alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike".split()


def _rag(args: list[str], crash: str | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    env.pop("RAG_CRASH_AT", None)
    if crash:
        env["RAG_CRASH_AT"] = crash
    return subprocess.run(
        [sys.executable, "-m", "rag.app.cli", *args], env=env, capture_output=True, text=True
    )


@pytest.mark.parametrize(
    ("retriever", "workers"),
    [
        ("bm25", "1"),
        pytest.param("hybrid", "1", marks=pytest.mark.slow),
        # two worker processes: the next batch is sealed and encoding when the third commit dies
        pytest.param("hybrid", "2", marks=pytest.mark.slow, id="hybrid-workers2"),
    ],
)
def test_kill_9_during_a_folder_ingest_resumes_after_the_last_commit(tmp_path, retriever, workers):
    """A real SIGKILL in the third commit of a 30-file run (chunks embedded, not yet committed);
    the rerun embeds only the files that were not committed, and the index equals one built in
    a single uninterrupted run: every chunk exactly once, the same search results."""
    folder = _many_files(tmp_path, 30)
    args = ["index", str(folder), "--retriever", retriever, "--batch-size", "12",
            "--workers", workers]
    killed = _rag([*args, "--out", str(tmp_path / "idx")], crash="after-state:3")
    assert killed.returncode == -signal.SIGKILL
    committed = read_manifest(tmp_path / "idx")
    assert 0 < len(committed["files"]) < 30  # two batches made it, whole files only
    resumed = _rag([*args, "--out", str(tmp_path / "idx")])
    assert resumed.returncode == 0, resumed.stderr
    n_done = len(committed["files"])
    assert f"files: {30 - n_done} new, 0 changed, {n_done} unchanged, 0 removed" in resumed.stdout
    assert main([*args, "--out", str(tmp_path / "clean")]) == 0

    from rag.pipeline import Pipeline

    got, want = Pipeline.open(tmp_path / "idx"), Pipeline.open(tmp_path / "clean")
    assert sorted(got.retriever.documents) == sorted(want.retriever.documents)
    assert len(got.retriever.documents) == 90  # 30 files x 3 sections, none twice
    assert read_manifest(tmp_path / "idx")["files"] == read_manifest(tmp_path / "clean")["files"]
    for q in ("charlie record", "File 17 part 2", "juliet kilo lima"):
        a, b = got.search(q, k=10), want.search(q, k=10)
        assert a.ids == b.ids and [h.score for h in a.hits] == pytest.approx(
            [h.score for h in b.hits], rel=1e-5
        )


def test_a_second_run_with_nothing_changed_writes_nothing(tmp_path):
    folder = _many_files(tmp_path, 4)
    args = ["index", str(folder), "--out", str(tmp_path / "idx"), "--retriever", "bm25"]
    assert main(args) == 0
    from rag.index import IndexFolder

    generation = IndexFolder(tmp_path / "idx").read_manifest()["generation"]
    assert main(args) == 0
    assert IndexFolder(tmp_path / "idx").read_manifest()["generation"] == generation


def test_a_thousand_contexts_fit_the_real_generator_window(smollm):
    from rag.core.types import Document, Hit, Query
    from rag.pipeline import Pipeline
    from rag.pipeline.context import ChunkContext
    from retrievers import BM25Retriever

    pipe = Pipeline(retriever=BM25Retriever(), generator=smollm)
    hits = [
        Hit(document=Document(id=f"d{i}", text=f"Fact {i}: " + "the sky is blue. " * 60), score=-i)
        for i in range(1000)
    ]
    q = Query(text="What colour is the sky?")
    kept = ChunkContext(neighbours=0).build(pipe, q, hits)
    n = int(smollm.prompt_ids(pipe._messages(q, kept))["input_ids"].shape[-1])
    assert 10 < len(kept) < 100 and [h.id for h in kept] == [f"d{i}" for i in range(len(kept))]
    assert n + smollm.max_new_tokens <= smollm.lm.config.max_position_embeddings
