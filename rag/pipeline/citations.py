"""Citation markers: parse ``[n]`` / ``[n, m]`` / ``[n-m]`` from generated text, resolve them
against the contexts actually given, and (optionally, labelled as such) attribute uncited
sentences to sources after the fact.

:func:`cite` is the one builder of a :class:`~rag.core.types.Citation`: the marker, the document id
and title, and where the cited text sits (``path``, ``span``, ``page``, ``heading``, from the
metadata that file ingestion writes: ``source``, ``start``/``end``, ``page``, ``headings``). Every
door shows what it built (``/ask``, ``/chat``, ``/v1/chat/completions``, MCP, the LangChain and
LlamaIndex adapters, ``rag ask`` and ``rag chat``), so a citation reads the same everywhere.

>>> parse_markers("Paris [1]. It is big [2, 3].")
[1, 2, 3]
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any
from urllib.parse import quote

from rag.core.types import Citation, Document, Hit

_BRACKET = re.compile(r"\[([0-9][0-9,;\s\-–]*)\]")
_WORD = re.compile(r"\w+")
_SENT = re.compile(r"(?<=[.!?])\s+")


def parse_markers(text: str) -> list[int]:
    """Marker numbers in order of first appearance (``[2-4]`` expands, at most 50 wide)."""
    out: list[int] = []
    for m in _BRACKET.finditer(text):
        for part in re.split(r"[,;\s]+", m.group(1).strip()):
            rng = re.fullmatch(r"(\d+)\s*[-–]\s*(\d+)", part)
            if rng:
                a, b = int(rng.group(1)), int(rng.group(2))
                nums = list(range(a, b + 1)) if 0 < b - a <= 50 else [a, b]
            elif part.isdigit():
                nums = [int(part)]
            else:
                continue
            out.extend(n for n in nums if n not in out)
    return out


def locate(doc: Document) -> dict[str, Any]:
    """Where ``doc``'s text sits in its source file: ``path``, ``span`` ``[start, end)``,
    ``page`` and the innermost ``heading`` (empty or ``None`` when not an ingested chunk)."""
    m = doc.metadata
    out: dict[str, Any] = {"path": str(m.get("source") or "")}
    if isinstance(m.get("start"), int) and isinstance(m.get("end"), int):
        out["span"] = (int(m["start"]), int(m["end"]))
    if isinstance(m.get("page"), int) and not isinstance(m.get("page"), bool):
        out["page"] = int(m["page"])
    heads = m.get("headings") or []
    out["heading"] = str(heads[-1]) if isinstance(heads, list) and heads else ""
    return out


def cite(marker: int, hit: Hit, source: str = "generated") -> Citation:
    """The citation of context ``marker`` (1-based) with its location (:func:`locate`)."""
    doc = hit.document
    return Citation(
        marker=marker, document_id=doc.id, title=doc.title, source=source, **locate(doc)
    )


DOCUMENT_URI = "ragnodes://documents/"


def document_uri(doc_id: str) -> str:
    """A document's URI, every reserved character percent-encoded (``#`` starts a URI's
    fragment, ``/`` a path segment): the MCP resource that reads it, and the ``url`` of an
    OpenAI ``url_citation``.

    >>> document_uri("pdf/libtasn1.pdf#5")
    'ragnodes://documents/pdf%2Flibtasn1.pdf%235'
    """
    return DOCUMENT_URI + quote(doc_id, safe="")


def sources_block(citations: Sequence[Citation]) -> str:
    """The cited sources as text for a chat client that shows only the content::

        Sources:
        [1] docs/guide.md#Install
        [2] pdf/manual.pdf:3
    """
    if not citations:
        return ""
    lines = []
    for c in citations:
        where = c.locator if c.path else (f"{c.document_id}: {c.title}" if c.title else c.locator)
        lines.append(f"[{c.marker}] {where}")
    return "\n\nSources:\n" + "\n".join(lines)


def url_citations(text: str, citations: Sequence[Citation]) -> list[dict[str, Any]]:
    """OpenAI's ``url_citation`` annotations of a chat message: one per ``[n]`` marker in
    ``text`` that cites a source, with its character range, the document's URI
    (:func:`document_uri`) and its locator as the title."""
    by_marker = {c.marker: c for c in citations}
    out = []
    for m in _BRACKET.finditer(text):
        for n in parse_markers(m.group(0)):
            c = by_marker.get(n)
            if c is not None:
                out.append(
                    {
                        "type": "url_citation",
                        "url_citation": {
                            "start_index": m.start(),
                            "end_index": m.end(),
                            "url": document_uri(c.document_id),
                            "title": c.locator if c.path else (c.title or c.document_id),
                        },
                    }
                )
    return out


def resolve(text: str, contexts: Sequence[Hit]) -> tuple[list[Citation], list[int]]:
    """Map markers to the contexts (1-based); return (citations, invalid marker numbers)."""
    cites, bad = [], []
    for n in parse_markers(text):
        if 1 <= n <= len(contexts):
            cites.append(cite(n, contexts[n - 1]))
        else:
            bad.append(n)
    return cites, bad


def _tokens(s: str) -> set[str]:
    return {w.lower() for w in _WORD.findall(s) if len(w) > 2}


def attribute(text: str, contexts: Sequence[Hit], min_overlap: float = 0.5) -> list[Citation]:
    """Post-hoc attribution for answers without markers: each sentence is attributed to the
    context containing the largest share of its content words, if that share >= ``min_overlap``.
    Citations made this way carry ``source="attributed"``, never ``"generated"``."""
    cites: dict[int, Citation] = {}
    ctx_tokens = [_tokens(h.document.full_text) for h in contexts]
    for sent in _SENT.split(text):
        st = _tokens(sent)
        if not st or not ctx_tokens:
            continue
        shares = [len(st & ct) / len(st) for ct in ctx_tokens]
        best = max(range(len(shares)), key=lambda i: (shares[i], -i))
        if shares[best] >= min_overlap and best + 1 not in cites:
            cites[best + 1] = cite(best + 1, contexts[best], source="attributed")
    return list(cites.values())
