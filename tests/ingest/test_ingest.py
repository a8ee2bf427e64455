"""Loaders, the token- and heading-aware chunker, parent grouping, neighbour merging, the context
budget and the citation support check (rag.ingest), on real files and the real MiniLM tokenizer."""

from __future__ import annotations

import gzip
import json

import pytest
from ingest_fixtures import make_folder

from rag.core.errors import ConfigError, DataError
from rag.core.nodes import Node
from rag.core.types import Answer, Citation, Document, Hit, Query, Ranking
from rag.ingest import Chunker, CsvColumns, load_paths, sections
from rag.pipeline.context import ChunkContext
from rag.pipeline.parents import expand_neighbours, group_by_parent, merge_adjacent


def _quiet(line: str) -> None:
    pass


@pytest.fixture(scope="module")
def notes(tmp_path_factory):
    return make_folder(tmp_path_factory.mktemp("ingest"))


@pytest.fixture(scope="module")
def chunker():
    return Chunker(chunk_size=48, chunk_overlap=8).load()


def test_every_format_loads_and_bad_files_are_skipped_with_one_line_each(notes):
    lines: list[str] = []
    res = load_paths([notes], warn=lines.append)
    ids = sorted(d.id for d in res.documents)
    assert ids == ["comets.docx", "moon.pdf", "planets.md", "sub/saturn.txt", "telescopes.html"]
    by = {d.id: d for d in res.documents}
    assert by["telescopes.html"].title == "Telescopes"
    assert "## Hubble" in by["telescopes.html"].text  # HTML headings become Markdown headings
    assert "## Halley" in by["comets.docx"].text and by["comets.docx"].title == "Comets"
    pages = by["moon.pdf"].metadata["pages"]
    text = by["moon.pdf"].text
    assert len(pages) == 2 and "Apollo 11" in text[pages[1][0] : pages[1][1]]
    assert by["sub/saturn.txt"].metadata["source"] == f"{notes.as_posix()}/sub/saturn.txt"
    reasons = {s.path.rsplit("/", 1)[-1]: s.reason for s in res.skipped}
    assert set(reasons) == {"empty.md", "latin1.txt", "binary.txt", "broken.pdf", "locked.pdf"}
    assert "encrypted" in reasons["locked.pdf"] and "broken PDF" in reasons["broken.pdf"]
    assert "UTF-8" in reasons["latin1.txt"] and "binary" in reasons["binary.txt"]
    assert len(lines) == 5 and all("\n" not in ln for ln in lines)
    assert res.ignored == 1  # image.png
    with pytest.raises(DataError, match="--strict"):
        load_paths([notes], strict=True, warn=lines.append)


def test_include_exclude_globs(notes):
    res = load_paths([notes], include=["*.md", "sub/*"], exclude=["empty.md"])
    assert sorted(d.id for d in res.documents) == ["planets.md", "sub/saturn.txt"]
    assert not res.skipped


def test_csv_column_mapping_and_jsonl_gz(tmp_path):
    p = tmp_path / "faq.csv"
    p.write_text("key,question,answer,lang\nk1,What?,Because.,en\nk2,Why?,So.,de\n")
    cols = CsvColumns.parse("text=question,answer;id=key;title=question")
    docs = load_paths([p], csv_columns=cols).documents
    assert [d.id for d in docs] == ["k1", "k2"]
    assert docs[0].text == "What?\n\nBecause." and docs[0].metadata["lang"] == "en"
    bad = load_paths([p], csv_columns=CsvColumns(text=("body",)), warn=lambda m: None)
    assert "no column 'body'" in bad.skipped[0].reason
    g = tmp_path / "c.jsonl.gz"
    with gzip.open(g, "wt") as f:
        f.write(json.dumps({"_id": "d1", "text": "hello"}) + "\n")
    (d,) = load_paths([g]).documents
    assert d.id == "d1" and d.metadata["format"] == "jsonl"
    with pytest.raises(DataError, match="text=COL"):
        CsvColumns.parse("body")


def test_sections_follow_headings_not_code_fences():
    text = "intro\n# A\n## B\nb text\n```\n# not a heading\n```\n## C\nc\n"
    assert [p for _, _, p in sections(text)] == [[], ["A", "B"], ["A", "C"]]


def test_chunks_fit_the_encoder_keep_spans_and_headings(notes, chunker):
    doc = next(d for d in load_paths([notes], warn=_quiet).documents if d.id == "planets.md")
    long = doc.model_copy(update={"text": doc.text + "\n" + ("Mars is red. " * 60)})
    chunks = chunker.split([long])
    assert [c.id for c in chunks] == [f"planets.md#{i}" for i in range(len(chunks))]
    assert len(chunks) >= 4
    for c in chunks:
        m = c.metadata
        assert long.text[m["start"] : m["end"]] == c.text  # exact character span
        assert m["parent_id"] == "planets.md"
        assert chunker.count_tokens(c.full_text) <= 48  # header + chunk within the budget
    assert chunks[0].metadata["headings"] == ["Solar System notes", "Jupiter"]
    assert chunks[0].title == "Solar System notes > Jupiter"
    assert chunks[-1].metadata["headings"][-1] == "Mars"
    # overlap: consecutive chunks of the same section share text
    a, b = chunks[-2].metadata, chunks[-1].metadata
    assert b["start"] < a["end"]


def test_pdf_chunks_carry_pages(notes):
    doc = next(d for d in load_paths([notes], warn=_quiet).documents if d.id == "moon.pdf")
    chunks = Chunker(chunk_size=16, chunk_overlap=0).split([doc])
    assert [c.metadata["page"] for c in (chunks[0], chunks[-1])] == [1, 2]


def test_chunker_config_round_trip_and_errors():
    c = Chunker(chunk_size=100, chunk_overlap=10, contextual=False)
    assert Node.from_config(c.to_config()) == c
    ctx = ChunkContext(neighbours=2, judge="none")
    assert Node.from_config(ctx.to_config()) == ctx
    with pytest.raises(ConfigError, match="exceeds the encoder's max_length"):
        Chunker(chunk_size=300)
    with pytest.raises(ConfigError, match="chunk_overlap"):
        Chunker(chunk_size=40, chunk_overlap=30)


def _chunk(parent: str, n: int, start: int, end: int, text: str, score: float) -> Hit:
    meta = {"parent_id": parent, "chunk": n, "start": start, "end": end, "source": parent}
    return Hit(document=Document(id=f"{parent}#{n}", text=text, metadata=meta), score=score)


def test_group_merge_and_expand():
    q = Query(text="q")
    hits = (
        _chunk("a", 0, 0, 5, "aaaaa", 3.0),
        _chunk("b", 2, 10, 15, "bbbbb", 2.0),
        _chunk("b", 3, 13, 20, "bbccccc", 1.5),
    )
    r = Ranking(query=q, hits=hits)
    assert group_by_parent(r, "max").ids == ["a", "b"]
    assert group_by_parent(r, "sum").ids == ["b", "a"]
    assert group_by_parent(r, "rrf").ids == ["b", "a"]
    assert group_by_parent(r, "max").hits[1].document.metadata["chunks"] == ["b#2", "b#3"]
    merged = merge_adjacent(hits)
    assert [h.id for h in merged] == ["a#0", "b#2+b#3"]
    assert merged[1].document.text == "bbbbbccccc"  # overlap [13, 15) not repeated
    assert (merged[1].document.metadata["start"], merged[1].document.metadata["end"]) == (10, 20)
    table = {h.id: h.document for h in hits}
    table["a#1"] = _chunk("a", 1, 5, 9, "dddd", 0).document
    grown = expand_neighbours(hits[:1], table, window=1)
    assert [h.id for h in grown] == ["a#0+a#1"] and grown[0].document.text == "aaaaadddd"


class _Gen:
    """A stand-in generator with the real MiniLM tokenizer and a small window: only the budget
    logic is under test here (the real SmolLM2 path is in test_ingest_cli)."""

    max_new_tokens = 32

    def __init__(self, tok):
        self.tokenizer = tok


def test_context_budget_fits_the_window(chunker):
    from rag.pipeline import Pipeline
    from retrievers import BM25Retriever

    pipe = Pipeline(retriever=BM25Retriever(), generator=_Gen(chunker._tok))
    ctx = ChunkContext(neighbours=0, budget_tokens=512)
    hits = [_chunk(f"d{i}", 0, 0, 400, "word " * 80, 1.0 / (i + 1)) for i in range(1000)]
    kept = ctx.build(pipe, Query(text="q"), hits)
    msgs = pipe._messages(Query(text="q"), kept)
    total = sum(len(chunker._tok(m["content"])["input_ids"]) for m in msgs)
    assert 1 <= len(kept) < 10 and total + 32 <= 512
    assert [h.id for h in kept] == [h.id for h in hits[: len(kept)]]  # best first


def test_citations_get_span_locator_and_support_verdict():
    good = _chunk("notes/planets.md", 0, 10, 60, "Jupiter is the largest planet.", 1.0)
    good.document.metadata.update(headings=["Notes", "Jupiter"], source="notes/planets.md")
    pdf = _chunk("moon.pdf", 1, 5, 40, "Apollo 11 landed in 1969.", 0.5)
    pdf.document.metadata.update(page=2, source="notes/moon.pdf")
    ans = Answer(
        query=Query(text="q"),
        text="Jupiter is the largest planet [1]. Bananas are blue [2].",
        citations=(Citation(marker=1, document_id=good.id), Citation(marker=2, document_id=pdf.id)),
        contexts=(good, pdf),
    )
    out = ChunkContext().check(ans)
    c1, c2 = out.citations
    assert c1.locator == "notes/planets.md#Jupiter" and c1.span == (10, 60)
    assert c1.supported and c1.judge == "lexical" and c1.support == 1.0
    assert c2.locator == "notes/moon.pdf:2" and c2.supported is False
    assert out.unsupported_markers == (2,)


def test_framework_adapters_keep_the_parent(notes, chunker):
    pytest.importorskip("llama_index.core")
    pytest.importorskip("langchain_core")
    from rag.app.integrations.langchain import from_documents
    from rag.app.integrations.llamaindex import from_nodes
    from rag.ingest.adapters import to_langchain_documents, to_llama_nodes

    docs = load_paths([notes], include=["*.md"], warn=_quiet).documents
    chunks = chunker.split(docs)
    nodes = to_llama_nodes(chunks)
    assert {n.ref_doc_id for n in nodes} == {"planets.md"}
    assert nodes[1].prev_node.node_id == chunks[0].id
    back = from_nodes(nodes)
    q = Query(text="q")
    r = Ranking(query=q, hits=tuple(Hit(document=d, score=1.0) for d in back))
    assert group_by_parent(r).ids == ["planets.md"]
    lc = to_langchain_documents(chunks)
    assert lc[0].metadata["parent_id"] == "planets.md" and lc[0].id == chunks[0].id
    lc_back = from_documents(lc)
    assert lc_back[0].metadata["start"] == chunks[0].metadata["start"]


def test_situating_sentences_are_written_once_then_cached(notes, chunker, smollm, tmp_path):
    from rag.ingest import Situator

    doc = next(d for d in load_paths([notes], warn=_quiet).documents if d.id == "planets.md")
    chunks = chunker.split([doc])[:2]
    s = Situator(max_new_tokens=24, cache_dir=str(tmp_path)).use(smollm)
    first = s.situate(doc, chunks)
    assert s.generated == 2 and s.cached == 0
    assert all(c.metadata["situating"] for c in first)
    assert first[0].title.startswith(chunks[0].title + ". ")
    assert [c.text for c in first] == [c.text for c in chunks]  # the span is untouched
    again = Situator(max_new_tokens=24, cache_dir=str(tmp_path)).use(smollm)
    assert [c.title for c in again.situate(doc, chunks)] == [c.title for c in first]
    assert again.generated == 0 and again.cached == 2
