"""Parent-aware results over chunks: merging / neighbour expansion of adjacent chunks for the
generator, parent lookup. The document-level ranking by grouping chunk scores
(:func:`group_by_parent`, re-exported here) lives with :class:`retrievers.parents.ParentRetriever`,
below this layer, and its ``rrf`` grouping is the one RRF (:func:`retrievers.fusion.rrf_sums`).

>>> from rag.core.types import Query, Ranking
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

from rag.core.errors import ConfigError
from rag.core.types import Document, Hit
from retrievers.parents import GROUPINGS as GROUPINGS
from retrievers.parents import group_by_parent as group_by_parent
from retrievers.parents import parent_of


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
