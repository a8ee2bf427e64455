"""The file cases of issue #29: symlinks resolved once and safe against cycles, bad CSV rows
skipped with file:line, Setext headings, a multi-MB text chunked block by block, progress lines,
and the CLI's filter options and help texts."""

from __future__ import annotations

import json
import os

import pytest

from rag.app.cli import build_parser, main
from rag.ingest.loaders import CsvColumns, discover, load_paths


def test_symlinks_are_followed_once_and_cycles_end(tmp_path):
    root = tmp_path / "notes"
    (root / "a").mkdir(parents=True)
    (root / "a" / "x.md").write_text("# X\n\nx\n")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "y.txt").write_text("y\n")
    os.symlink(outside, root / "linked")  # a linked folder: walked
    os.symlink(root / "a" / "x.md", root / "x-again.md")  # a second name of a file: once
    os.symlink(root, root / "a" / "loop")  # a cycle: ends
    found, _ = discover([root])
    assert [s for _, s in found] == [f"{root.as_posix()}/a/x.md", f"{root.as_posix()}/linked/y.txt"]


def test_a_bad_csv_row_is_skipped_with_file_and_line(tmp_path):
    p = tmp_path / "rows.csv"
    p.write_text('id,text\na,first\n,"no id,\nover two lines"\na,repeated\nb,second\n')
    lines: list[str] = []
    res = load_paths([p], csv_columns=CsvColumns.parse("text=text;id=id"), warn=lines.append)
    assert [d.id for d in res.documents] == ["a", "b"]
    assert lines == [
        f"skipped row {p.as_posix()}:4: blank 'id' cell; fill in an id",
        f"skipped row {p.as_posix()}:5: id 'a' repeats an earlier row's",
    ]


def test_a_multi_megabyte_text_is_chunked_as_a_stream(monkeypatch):
    """The tokenizer never sees more than one block of the file, and the chunks still tile the
    text exactly (each chunk is its span of the source)."""
    from rag.core.types import Document
    from rag.ingest import splitter
    from rag.ingest.splitter import BLOCK_CHARS, Chunker

    para = "Saturn has many moons. Titan has a thick atmosphere of nitrogen and methane. " * 6
    text = "Notes\n=====\n\n" + "\n\n".join(f"{i}. {para}" for i in range(5000))  # ~2.4 MB
    assert len(text) > 2_000_000
    chunker = Chunker(chunk_size=200).load()
    longest = 0
    real = chunker._tok

    class Spy:  # the real tokenizer, with the longest text it was given recorded
        def __call__(self, t, **kw):
            nonlocal longest
            longest = max(longest, len(t))
            return real(t, **kw)

        def __getattr__(self, name):
            return getattr(real, name)

    monkeypatch.setattr(chunker, "_tok", Spy())
    doc = Document(id="big.txt", text=text, title="big", metadata={"source": "big.txt"})
    stream = chunker.iter_split(doc)
    first = next(stream)  # a generator: the first chunk comes before the rest is tokenised
    assert longest <= BLOCK_CHARS
    chunks = [first, *stream]
    assert longest <= BLOCK_CHARS and len(chunks) > 1000
    for c in chunks[:50] + chunks[-50:]:
        assert c.text == text[c.metadata["start"] : c.metadata["end"]]
        assert c.metadata["headings"] == ["Notes"]
    assert chunks[-1].metadata["end"] == len(text.rstrip())
    assert splitter.blocks(text, 0, len(text))[0][1] <= BLOCK_CHARS


def test_progress_lines_on_a_pipe():
    import io

    from rag.ingest.progress import IndexProgress

    out = io.StringIO()
    p = IndexProgress(stream=out, tty=False, interval=0.0)
    p.files(1, 4)
    p.chunks(10)
    p.committed(10)
    p.close()
    lines = out.getvalue().splitlines()
    assert len(lines) == 4 and "\r" not in out.getvalue()
    assert lines[-1].startswith("indexing: 1/4 files read, 10 chunks, 10 embedded and committed")
    out = io.StringIO()  # a long interval: the first update at once, then the last at the end
    p = IndexProgress(stream=out, tty=False, interval=3600)
    for _ in range(100):
        p.chunks(1)
    p.close()
    assert [ln.split(" (")[0] for ln in out.getvalue().splitlines()] == [
        "indexing: 0/0 files read, 1 chunks, 0 embedded and committed",
        "indexing: 0/0 files read, 100 chunks, 0 embedded and committed",
    ]
    out = io.StringIO()  # a terminal: one bar, redrawn in place
    p = IndexProgress(stream=out, tty=True)
    p.files(2, 3)
    p.chunks(7)
    p.close()
    assert "\r" in out.getvalue() and "chunks=7" in out.getvalue()


def test_help_texts_and_the_filter_schema(capsys):
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    helps = {c.dest: c.help for c in sub._choices_actions}
    assert helps["index"] == "index files, folders or a JSONL corpus into an index folder"
    assert main(["config", "schema", "filter"]) == 0
    schema = json.loads(capsys.readouterr().out)
    assert schema["title"] == "ragnodes metadata filter" and "$or" in schema["properties"]
    for cmd in ("search", "ask"):
        with pytest.raises(SystemExit):
            main([cmd, "--help"])
        assert "--filter JSON" in capsys.readouterr().out


def test_filter_option_errors_are_one_line(tmp_path, capsys, demo_docs):
    from rag.pipeline import Pipeline
    from retrievers import BM25Retriever

    Pipeline(retriever=BM25Retriever().index(demo_docs)).save(tmp_path / "idx")
    idx = str(tmp_path / "idx")
    assert main(["search", idx, "planet", "--filter", "{not json"]) == 2
    assert capsys.readouterr().err.startswith("error: --filter is not JSON")
    assert main(["search", idx, "planet", "--filter", '{"topic": {"$near": 1}}']) == 2
    err = capsys.readouterr().err
    assert "unknown operator '$near'" in err and err.count("\n") == 1
    flt = tmp_path / "f.json"
    flt.write_text('{"topic": {"$in": ["astronomy", "geology"]}}')
    assert main(["search", idx, "planet", "--json", "-k", "20", "--filter", f"@{flt}"]) == 0
    filtered = json.loads(capsys.readouterr().out)
    assert main(["search", idx, "planet", "--json", "-k", "20"]) == 0
    assert filtered and filtered == json.loads(capsys.readouterr().out)  # all are astronomy
    nin = '{"topic": {"$nin": ["astronomy"]}}'  # every demo document is astronomy
    assert main(["search", idx, "planet", "--json", "--filter", nin]) == 0
    assert json.loads(capsys.readouterr().out) == []
