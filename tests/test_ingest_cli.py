"""End to end: `rag index` on a folder of .md, .pdf, .docx, .html, .txt and broken files, then
`rag ask` with the real SmolLM2 citing `path#section`; incremental re-indexing."""

from __future__ import annotations

import json
import os

import pytest
from ingest_fixtures import MD, make_folder

from rag.cli import main


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
    manifest = json.loads((root / "idx" / "ingest.json").read_text())
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
    if not (root / "idx" / "ingest.json").exists():
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
    manifest = json.loads((root / "idx-yaml" / "ingest.json").read_text())
    assert manifest["chunker"]["chunk_size"] == 40
    capsys.readouterr()
    assert main([*args, "--chunk-size", "80"]) == 0
    out = capsys.readouterr().out
    assert "0 new, " in out and " changed, 0 unchanged" in out


def test_a_kill_between_the_two_renames_is_repaired(indexed, capsys):
    root, _ = indexed
    args = ["index", "notes", "--out", "idx-kill", "--retriever", "bm25"]
    assert main(args) == 0
    # the state a kill -9 leaves right after `out -> out.old` and before `out.new -> out`
    (root / "idx-kill").rename(root / "idx-kill.old")
    capsys.readouterr()
    assert main(args) == 0
    assert " 0 new, 0 changed" in capsys.readouterr().out  # the old index was put back, reused
    assert not (root / "idx-kill.old").exists()


def test_a_thousand_contexts_fit_the_real_generator_window(smollm):
    from rag.ingest import ChunkContext
    from rag.pipeline import Pipeline
    from rag.types import Document, Hit, Query
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
