"""Document-level retrieval over chunks (``retrievers.parents.ParentRetriever``): the ranking of
parents is the grouping of the child's chunk ranking, it persists as an index, and it is reachable
from a config file and from ``rag search --group``."""

from __future__ import annotations

import json
import os

import pytest
from ingest_fixtures import make_folder

from rag.app.cli import main
from rag.core.errors import ConfigError
from rag.core.nodes import Node
from rag.ingest import Chunker, load_paths
from rag.pipeline.parents import group_by_parent
from retrievers import BM25Retriever, ParentRetriever


@pytest.fixture(scope="module")
def chunks(tmp_path_factory):
    root = tmp_path_factory.mktemp("parents")
    folder = make_folder(root)
    docs = load_paths([folder]).documents
    return [c for d in docs for c in Chunker(chunk_size=24, chunk_overlap=0).split_one(d)]


QUERIES = ["largest planet", "telescope orbit infrared", "comet visible years moons"]


@pytest.mark.parametrize("how", ["max", "sum", "rrf"])
def test_parents_are_the_grouped_chunk_ranking(chunks, how):
    child = BM25Retriever().index(chunks)
    parents = ParentRetriever(BM25Retriever(), how=how, depth=50).index(chunks)
    assert len({c.metadata["parent_id"] for c in chunks}) < len(chunks)  # really chunked
    for q in QUERIES:
        got = parents.retrieve(q, k=3)
        want = group_by_parent(child.retrieve(q, k=50), how, k=3)
        assert got.ids == want.ids and got.scores == pytest.approx(want.scores)
        assert len(set(got.ids)) == len(got.ids) and all("#" not in i for i in got.ids)
        best = got.hits[0].document.metadata["chunks"]
        assert best and all(c.startswith(got.ids[0]) for c in best)


def test_persists_as_an_index_and_wraps_an_indexed_retriever(chunks, tmp_path):
    from rag.pipeline import Pipeline

    pipe = Pipeline(ParentRetriever(BM25Retriever(), how="max"))
    pipe.save(tmp_path / "idx")
    pipe.index(chunks)  # committed
    reopened = Pipeline.open(tmp_path / "idx")
    assert type(reopened.retriever) is ParentRetriever
    assert len(reopened.retriever.documents) == len(chunks)
    for q in QUERIES:
        assert reopened.search(q, k=3).ids == pipe.search(q, k=3).ids
    wrapped = ParentRetriever(BM25Retriever().index(chunks))  # no re-indexing needed
    assert wrapped.retrieve(QUERIES[0], k=3).ids == pipe.search(QUERIES[0], k=3).ids


def test_config_errors_are_one_line():
    with pytest.raises(ConfigError, match="how must be one of"):
        Node.from_config({"type": "parents", "retriever": {"type": "bm25"}, "how": "mean"})
    with pytest.raises(ConfigError, match="depth"):
        Node.from_config({"type": "parents", "retriever": {"type": "bm25"}, "depth": 0})


def test_cli_index_with_a_parents_config_and_search_group(tmp_path, capsys):
    folder = make_folder(tmp_path)
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        (tmp_path / "parents.yaml").write_text(
            "type: parents\nhow: max\nretriever:\n  type: bm25\n"
        )
        assert main(["index", "notes", "--out", "by-file", "--config", "parents.yaml"]) == 0
        assert (
            main(
                [
                    "index",
                    "notes",
                    "--out",
                    "by-chunk",
                    "--retriever",
                    "bm25",
                    "--chunk-size",
                    "24",
                    "--chunk-overlap",
                    "0",
                ]
            )
            == 0
        )
        capsys.readouterr()
        assert main(["search", "by-file", "largest planet", "--json", "-k", "3"]) == 0
        files = [h["id"] for h in json.loads(capsys.readouterr().out)]
        assert files[0] == "planets.md" and all("#" not in i for i in files)
        assert main(["search", "by-chunk", "largest planet", "--json", "-k", "3"]) == 0
        assert "#" in json.loads(capsys.readouterr().out)[0]["id"]
        assert main(["search", "by-chunk", "largest planet", "--json", "--group", "max"]) == 0
        grouped = [h["id"] for h in json.loads(capsys.readouterr().out)]
        assert grouped[0] == "planets.md" and len(set(grouped)) == len(grouped)
    finally:
        os.chdir(cwd)
    assert folder.exists()


def test_fetch_of_a_parent_id_reassembles_the_file_from_its_chunks(tmp_path):
    """An id that grouping returned (a file) is fetchable: the tools/MCP ``fetch`` and the
    agent's fetch reassemble it from its chunks, overlaps not repeated."""
    from rag.ingest.frameworks import fetch
    from rag.pipeline import Pipeline

    folder = make_folder(tmp_path)
    docs = [d for d in load_paths([folder]).documents if d.id == "planets.md"]
    (doc,) = docs
    chunks = Chunker(chunk_size=24, chunk_overlap=6).split_one(doc)
    assert len(chunks) > 2  # overlapping chunks
    pipe = Pipeline(ParentRetriever(BM25Retriever()))
    pipe.index(chunks)
    hit = pipe.search("largest planet", k=1).hits[0]
    whole = fetch(pipe, hit.id)
    assert whole.id == "planets.md" and whole.metadata["chunks"] == [c.id for c in chunks]
    for c in chunks:  # every chunk's text is in the reassembled document, once, in order
        assert c.text in whole.text
    spans = [(c.metadata["start"], c.metadata["end"]) for c in chunks]
    source = doc.text[spans[0][0] : spans[-1][1]]  # exact up to the whitespace between chunks
    assert whole.text.split() == source.split()
    assert fetch(pipe, chunks[1].id) == chunks[1]  # a chunk id still gives the chunk
    with pytest.raises(ConfigError, match="no document has id"):
        fetch(pipe, "nope.md")
