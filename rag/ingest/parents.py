"""Parent-aware results over chunks: document-level ranking by grouping chunk scores, and
merging / neighbour expansion of adjacent chunks for the generator.

Grouping (``how``), over the chunk ranking ``c_1..c_n`` of one query, for a parent ``D``:

* ``max``: ``s(D) = max_{c in D} s(c)`` (MaxP, Dai & Callan, SIGIR 2019);
* ``sum``: ``s(D) = sum_{c in D} s(c)`` (SumP, same paper; favours documents with many hits);
* ``rrf``: ``s(D) = sum_{c in D} 1 / (k + rank(c))`` (reciprocal rank fusion of a document's
  chunks, Cormack et al. 2009, ``k = 60``).

>>> from rag.types import Query
>>> c = lambda i, p, s: Hit(document=Document(id=i, text="t", metadata={"parent_id": p}), score=s)
>>> hits = (c("a#0", "a", 3.0), c("b#0", "b", 2.0), c("b#1", "b", 2.0))
>>> r = Ranking(query=Query(text="q"), hits=hits)
>>> group_by_parent(r, "max").ids, group_by_parent(r, "sum").ids
(['a', 'b'], ['b', 'a'])
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from rag.errors import ConfigError
from rag.types import Document, Hit, Ranking

GROUPINGS = ("max", "sum", "rrf")


def parent_of(doc: Document) -> str:
    """A chunk's parent id: ``parent_id`` (rag.ingest), else LlamaIndex's ``ref_doc_id``; a
    document that is not a chunk is its own parent."""
    m = doc.metadata
    return str(m.get("parent_id", m.get("ref_doc_id", doc.id)))


def group_by_parent(
    ranking: Ranking, how: str = "max", k: int | None = None, rrf_k: int = 60
) -> Ranking:
    """A document-level ranking from a chunk ranking (see the module docstring). Each parent hit
    carries its best chunk's text, the doc title, and ``metadata["chunks"]`` (its chunk ids,
    best first)."""
    if how not in GROUPINGS:
        raise ConfigError(f"grouping must be one of {GROUPINGS}, got {how!r}")
    scores: dict[str, float] = {}
    chunks: dict[str, list[Document]] = {}
    for rank, h in enumerate(ranking.hits, 1):
        p = parent_of(h.document)
        s = {"max": h.score, "sum": h.score, "rrf": 1.0 / (rrf_k + rank)}[how]
        if p not in scores:
            scores[p] = s
            chunks[p] = []
        elif how == "max":
            scores[p] = max(scores[p], s)
        else:
            scores[p] += s
        chunks[p].append(h.document)
    pairs = []
    for p, s in scores.items():
        best = chunks[p][0]
        meta = {k2: v for k2, v in best.metadata.items() if k2 not in ("chunk", "start", "end")}
        meta["chunks"] = [c.id for c in chunks[p]]
        title = str(best.metadata.get("doc_title", best.title))
        pairs.append((Document(id=p, text=best.text, title=title, metadata=meta), s))
    return Ranking.from_scored(ranking.query, pairs, k=k, stage=f"{ranking.stage}|group:{how}")


def _span(doc: Document) -> tuple[int, int] | None:
    m = doc.metadata
    if "start" in m and "end" in m and "parent_id" in m:
        return int(m["start"]), int(m["end"])
    return None


def merge_adjacent(hits: Sequence[Hit]) -> list[Hit]:
    """Merge hits that are overlapping or adjacent chunks of the same parent into one hit
    (text = the union of the spans, score = the best, position = the best's); chunk ids joined
    with ``+``. Non-chunks pass through."""
    groups: list[list[Hit]] = []
    for h in hits:
        sp = _span(h.document)
        for g in groups:
            d0 = g[0].document
            if sp is None or _span(d0) is None or parent_of(d0) != parent_of(h.document):
                continue
            if d0.metadata.get("headings") != h.document.metadata.get("headings"):
                continue  # a merged hit stays inside one section (one citation heading)
            chunk_nos = {int(x.document.metadata["chunk"]) for x in g}
            n = int(h.document.metadata["chunk"])
            if n - 1 in chunk_nos or n + 1 in chunk_nos:
                g.append(h)
                break
        else:
            groups.append([h])
    out = []
    for g in groups:
        if len(g) == 1:
            out.append(g[0])
            continue
        parts = sorted((x.document for x in g), key=lambda d: int(d.metadata["start"]))
        text, end = _join_spans(parts)
        first = parts[0]
        meta = {
            **first.metadata,
            "end": end,
            "merged": [d.id for d in parts],
        }
        doc = Document(
            id="+".join(d.id for d in parts), text=text, title=first.title, metadata=meta
        )
        out.append(Hit(document=doc, score=max(x.score for x in g)))
    return out


def expand_neighbours(
    hits: Sequence[Hit], documents: Mapping[str, Document], window: int = 1
) -> list[Hit]:
    """Add the ``window`` chunks before and after each chunk hit (from the index's ``documents``)
    and merge adjacent ones (:func:`merge_adjacent`), so the generator reads a passage in its
    surroundings ("small-to-big" retrieval, LlamaIndex's sentence-window). Neighbours come from
    the same section (same heading path) only."""
    if window < 0:
        raise ConfigError(f"window must be >= 0, got {window}")
    seen = {h.id for h in hits}
    grown: list[Hit] = []
    for h in hits:
        grown.append(h)
        m = h.document.metadata
        if "parent_id" not in m or "chunk" not in m:
            continue
        for d in range(1, window + 1):
            for n in (int(m["chunk"]) - d, int(m["chunk"]) + d):
                cid = f"{m['parent_id']}#{n}"
                same = cid in documents and documents[cid].metadata.get("headings") == m.get(
                    "headings"
                )
                if same and cid not in seen:  # neighbours within the same section only
                    seen.add(cid)
                    grown.append(Hit(document=documents[cid], score=h.score))
    return merge_adjacent(grown)


def chunk_documents(retriever: Any) -> Mapping[str, Document]:
    """The retriever's document table (chunks), or empty when it has none."""
    try:
        return retriever.documents
    except AttributeError:
        return {}


_HEADING_LINE = re.compile(r"[ \t]*#{1,6}[ \t]+[^\n]*\n?\s*")


def trim_headings(hit: Hit) -> Hit:
    """The hit without the Markdown heading lines its chunk starts with (the header already says
    them); ``start`` moves past them, so the span stays exact."""
    d = hit.document
    cut = 0
    while "start" in d.metadata:
        m = _HEADING_LINE.match(d.text, cut)
        if m is None or m.end() >= len(d.text):
            break
        cut = m.end()
    if cut == 0:
        return hit
    meta = {**d.metadata, "start": int(d.metadata["start"]) + cut}
    return Hit(
        document=d.model_copy(update={"text": d.text[cut:], "metadata": meta}), score=hit.score
    )


def _join_spans(parts: Sequence[Document]) -> tuple[str, int]:
    """The text covered by chunks sorted by ``start`` (overlaps not repeated, a gap becomes a
    newline), and the end of the last span."""
    text, end = parts[0].text, int(parts[0].metadata["end"])
    for d in parts[1:]:
        s, e = int(d.metadata["start"]), int(d.metadata["end"])
        if e > end:
            text += ("" if s <= end else "\n") + d.text[max(0, end - s) :]
            end = e
    return text, end


def parent_document(documents: Mapping[str, Document], parent_id: str) -> Document | None:
    """The whole source document ``parent_id`` reassembled from its chunks ``<parent>#0``,
    ``#1``... (their spans joined, overlaps not repeated; whitespace the splitter left between
    two chunks becomes one newline), with ``metadata["chunks"]``; ``None``
    when it has no chunks. What ``fetch`` returns for an id that :class:`ParentRetriever` or
    ``rag search --group`` gave (reads only that document's chunks)."""
    chunks: list[Document] = []
    while (c := documents.get(f"{parent_id}#{len(chunks)}")) is not None:
        chunks.append(c)
    chunks = [c for c in chunks if _span(c) is not None and parent_of(c) == parent_id]
    if not chunks:
        return None
    parts = sorted(chunks, key=lambda d: int(d.metadata["start"]))
    text, _ = _join_spans(parts)
    first = chunks[0]
    meta = {k: v for k, v in first.metadata.items() if k not in ("chunk", "start", "end")}
    meta.pop("headings", None)
    meta["chunks"] = [c.id for c in chunks]
    title = str(first.metadata.get("doc_title", first.title))
    return Document(id=parent_id, text=text, title=title, metadata=meta)


def lookup(documents: Mapping[str, Document], doc_id: str) -> Document | None:
    """The document ``doc_id``: a stored one (a chunk or a whole document), the parent
    reassembled from its chunks (:func:`parent_document`), or merged adjacent chunks as a
    citation names them (``a#0+a#1``, :func:`merge_adjacent`)."""
    doc = documents.get(doc_id)
    if doc is not None:
        return doc
    if "+" in doc_id:
        parts = [documents.get(i) for i in doc_id.split("+")]
        if all(p is not None for p in parts):
            hits = [Hit(document=p, score=0.0) for p in parts if p is not None]
            merged = merge_adjacent(hits)
            if len(merged) == 1 and merged[0].id == doc_id:
                return merged[0].document
    return parent_document(documents, doc_id)
