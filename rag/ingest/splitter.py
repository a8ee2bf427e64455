"""Token-aware, heading-aware recursive splitting of documents into chunks.

A document is cut into *sections* at its Markdown headings (ATX ``#`` .. ``######`` and Setext
``===`` / ``---`` underlines, in .md and .txt alike, not inside code fences; HTML and DOCX arrive
as Markdown from :mod:`rag.ingest.loaders`), each section is cut
recursively at paragraph, sentence, line and word boundaries until every piece fits the budget,
and the pieces are packed greedily into chunks with an overlap of whole pieces
(LangChain's ``RecursiveCharacterTextSplitter``, counted in tokens; Lewis et al. 2020 used
100-word passages, Karpukhin et al. 2020 the same for DPR). Tokens are counted with the
*retriever's own tokenizer* from one offset-mapped pass over the document, so a chunk plus its
contextual header plus the special tokens fits the encoder's ``max_length``: nothing is truncated.

Each chunk is a :class:`~rag.core.types.Document` with id ``<doc>#<n>`` (``n`` from 0), ``text`` the
exact source span ``parent.text[start:end]`` and metadata ``parent_id``, ``chunk``, ``start``,
``end``, ``headings`` (the heading path), ``doc_title`` and, for PDFs, ``page`` (1-based, where
the chunk starts). With ``contextual=True`` the chunk's ``title`` is the contextual header
``doc title > heading > sub-heading``, which retrievers index with the text (``full_text``):
Anthropic's "Contextual Retrieval" (2024) without the LLM; :mod:`rag.ingest.contextual` adds the
LLM-written situating sentence.

>>> chunker = Chunker(chunk_size=64, chunk_overlap=8)
>>> chunks = chunker.split([Document(id="a.md", text="# A\\n\\nOne. Two.")])   # doctest: +SKIP
>>> chunks[0].id, chunks[0].metadata["headings"]                              # doctest: +SKIP
('a.md#0', ['A'])
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Iterator, Sequence
from typing import Any, ClassVar

from rag.core.errors import ConfigError
from rag.core.nodes import Node
from rag.core.types import Document

_HEADING = re.compile(r"^(#{1,6})[ \t]+(.+?)[ \t#]*$")
_FENCE = re.compile(r"^(```|~~~)")
_SETEXT = re.compile(r"^ {0,3}(={3,}|-{3,})[ \t]*$")
# paragraph, sentence, line, word boundaries, coarsest first
_SEPARATORS = (
    re.compile(r"\n[ \t]*\n\s*"),
    re.compile(r"(?<=[.!?])[\"')\]]*\s+"),
    re.compile(r"\n\s*"),
    re.compile(r"\s+"),
)


def _setext(lines: list[str], i: int, prev_blank: bool) -> int:
    """The level (1 for ``===``, 2 for ``---``) when line ``i`` is a one-line paragraph
    underlined as a Setext heading, else 0."""
    if i + 1 >= len(lines) or not prev_blank or not lines[i].strip():
        return 0
    if _HEADING.match(lines[i].rstrip("\n")) or _FENCE.match(lines[i]):
        return 0
    m = _SETEXT.match(lines[i + 1].rstrip("\n"))
    return 0 if m is None else (1 if m.group(1)[0] == "=" else 2)


def sections(text: str) -> list[tuple[int, int, list[str]]]:
    """``[(start, end, heading_path)]`` covering ``text``; a heading line (ATX ``# h``, or a
    Setext ``h`` underlined by ``===`` / ``---``) opens its section."""
    out: list[tuple[int, int, list[str]]] = []
    stack: list[tuple[int, str]] = []
    start, fenced, pos, body, prev_blank = 0, False, 0, False, True
    path: list[str] = []
    lines = text.splitlines(keepends=True)
    i = 0
    while i < len(lines):
        line = lines[i]
        if _FENCE.match(line):
            fenced = not fenced
        m = None if fenced else _HEADING.match(line.rstrip("\n"))
        setext = 0 if fenced or m else _setext(lines, i, prev_blank)
        if m or setext:
            if body:  # a section of headings only joins the next one (its path is the deeper)
                out.append((start, pos, path))
                start, body = pos, False
            level, title = (len(m.group(1)), m.group(2)) if m else (setext, line)
            stack = [(lv, t) for lv, t in stack if lv < level] + [(level, title.strip())]
            path = [t for _, t in stack]
            if setext:  # the underline belongs to the heading
                pos += len(line)
                i += 1
                line = lines[i]
        elif line.strip():
            body = True
        prev_blank = not line.strip() or bool(m or setext)
        pos += len(line)
        i += 1
    if text[start:].strip():
        out.append((start, len(text), path))
    return out


def header_for(doc_title: str, headings: Sequence[str]) -> str:
    """``title > h1 > h2``, without repeating a heading equal to the title."""
    parts = [doc_title] if doc_title else []
    parts += [h for h in headings if h and h != doc_title]
    return " > ".join(parts)


class TokenCounter:
    """Token counts of any span of ``text[lo:hi]`` (offsets into ``text``), from one
    offset-mapped tokenisation of that block."""

    def __init__(self, tokenizer: Any, text: str, lo: int = 0, hi: int | None = None) -> None:
        block = text if lo == 0 and hi is None else text[lo:hi]
        enc = tokenizer(block, add_special_tokens=False, return_offsets_mapping=True)
        self.starts = [lo + a for a, b in enc["offset_mapping"] if b > a]

    def __call__(self, a: int, b: int) -> int:
        return bisect.bisect_left(self.starts, b) - bisect.bisect_left(self.starts, a)

    def cut(self, a: int, b: int, n: int) -> int:
        """The offset after the first ``n`` tokens of ``[a, b)`` (a hard cut inside a word)."""
        i = bisect.bisect_left(self.starts, a) + n
        return self.starts[i] if i < len(self.starts) and self.starts[i] < b else b


BLOCK_CHARS = 200_000  # characters tokenised at once: a long file is chunked as a stream


def blocks(text: str, a: int, b: int, size: int = BLOCK_CHARS) -> list[tuple[int, int]]:
    """``[a, b)`` cut into spans of at most ``size`` characters, each ending at a paragraph
    break, else a line break, else a space, where one falls in its second half."""
    out = []
    while b - a > size:
        cut = -1
        for sep in ("\n\n", "\n", " "):
            cut = text.rfind(sep, a + size // 2, a + size)
            if cut > 0:
                cut += len(sep)
                break
        cut = cut if cut > a else a + size
        out.append((a, cut))
        a = cut
    out.append((a, b))
    return out


def _strip(text: str, a: int, b: int) -> tuple[int, int]:
    while a < b and text[a].isspace():
        a += 1
    while b > a and text[b - 1].isspace():
        b -= 1
    return a, b


def _pieces(
    text: str, a: int, b: int, budget: int, count: TokenCounter, level: int = 0
) -> list[tuple[int, int]]:
    """Spans of ``[a, b)`` of at most ``budget`` tokens, cut at the coarsest boundary possible."""
    a, b = _strip(text, a, b)
    if a >= b:
        return []
    if count(a, b) <= budget:
        return [(a, b)]
    if level >= len(_SEPARATORS):
        out, s = [], a
        while s < b:
            e = max(count.cut(s, b, budget), s + 1)
            out.append((s, e))
            s = e
        return out
    out, s = [], a
    for m in _SEPARATORS[level].finditer(text, a, b):
        out += _pieces(text, s, m.start(), budget, count, level + 1) if m.start() > s else []
        s = m.end()
    out += _pieces(text, s, b, budget, count, level + 1)
    return out


def pack(
    pieces: Sequence[tuple[int, int]], budget: int, overlap: int, count: TokenCounter
) -> list[tuple[int, int]]:
    """Greedy packing of consecutive pieces into spans of at most ``budget`` tokens; each new
    span starts with the trailing pieces of the previous one that fit in ``overlap`` tokens."""
    spans: list[tuple[int, int]] = []
    cur: list[tuple[int, int]] = []
    for p in pieces:
        if cur and count(cur[0][0], p[1]) > budget:
            spans.append((cur[0][0], cur[-1][1]))
            keep: list[tuple[int, int]] = []
            for q in reversed(cur):
                if count(q[0], cur[-1][1]) > overlap:
                    break
                keep.insert(0, q)
            while keep and count(keep[0][0], p[1]) > budget:
                keep.pop(0)
            cur = keep
        cur.append(p)
    if cur:
        spans.append((cur[0][0], cur[-1][1]))
    return spans


class Chunker(Node):
    """Split documents into token-bounded, heading-aware chunks (see the module docstring).

    Args:
        tokenizer: the model whose tokenizer counts tokens: short name, HF id or path (use the
            dense retriever's encoder model; :meth:`for_retriever` does).
        max_length: the encoder's ``max_length``; chunks are sized so that header + chunk +
            ``special_tokens`` fit it.
        chunk_size: tokens per chunk including the header (default ``max_length - special``).
        chunk_overlap: tokens of whole pieces repeated from the previous chunk (default
            ``min(32, chunk_size // 4)``, so a small ``chunk_size`` alone is valid).
        contextual: put ``doc title > heading path`` in each chunk's ``title`` (indexed with it).
        special_tokens: tokens the encoder adds around a text ([CLS] and [SEP] for BERT).
        reserve_tokens: tokens left free in every chunk for an LLM-written situating sentence
            (:class:`~rag.ingest.contextual.Situator`).
    """

    name: ClassVar[str] = "chunker"
    kind: ClassVar[str] = "splitter"

    def __init__(
        self,
        tokenizer: str = "minilm",
        max_length: int = 256,
        chunk_size: int | None = None,
        chunk_overlap: int | None = None,
        contextual: bool = True,
        special_tokens: int = 2,
        reserve_tokens: int = 0,
    ) -> None:
        size = chunk_size if chunk_size is not None else max_length - special_tokens
        if size < 16:
            raise ConfigError(f"chunk_size must be >= 16 tokens, got {size}")
        if size + special_tokens > max_length:
            raise ConfigError(
                f"chunk_size {size} + {special_tokens} special tokens exceeds the encoder's "
                f"max_length {max_length}; lower --chunk-size"
            )
        if chunk_overlap is None:
            chunk_overlap = min(32, size // 4)
        if not 0 <= chunk_overlap < size // 2:
            raise ConfigError(
                f"chunk_overlap must be >= 0 and < chunk_size / 2 ({size // 2}), "
                f"got {chunk_overlap}"
            )
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.chunk_size = chunk_size
        self.chunk_overlap = chunk_overlap
        self.contextual = contextual
        self.special_tokens = special_tokens
        self.reserve_tokens = reserve_tokens
        if size - reserve_tokens < 16:
            raise ConfigError(f"reserve_tokens {reserve_tokens} leaves < 16 tokens of a chunk")

    @property
    def size(self) -> int:
        return (
            self.chunk_size
            if self.chunk_size is not None
            else self.max_length - self.special_tokens
        )

    @classmethod
    def for_retriever(cls, retriever: Any, **kw: Any) -> Chunker:
        """A chunker that counts with the (first) dense encoder inside ``retriever``."""
        enc = find_encoder(retriever)
        if enc is not None:
            kw.setdefault("tokenizer", enc.model)
            kw.setdefault("max_length", enc.max_length)
        return cls(**kw)

    def _load(self) -> None:
        from rag.core.extras import require
        from rag.core.models import resolve_model

        transformers = require("transformers", feature="token-aware chunking")
        self._tok = transformers.AutoTokenizer.from_pretrained(resolve_model(self.tokenizer))
        self._tok.model_max_length = 10**9  # we count long texts on purpose; no warning

    def count_tokens(self, text: str) -> int:
        self.load()
        return len(self._tok(text, add_special_tokens=False)["input_ids"])

    def _header(
        self, doc: Document, path: list[str], cache: dict[tuple[str, ...], tuple[str, int]]
    ) -> tuple[str, int]:
        key = tuple(path)
        if key not in cache:
            header = header_for(doc.title, path) if self.contextual else ""
            n = self.count_tokens(header) + 1 if header else 0  # +1: the space before the text
            limit = (self.size - self.reserve_tokens) // 2
            if n > limit:  # a runaway heading must not eat the chunk
                ids = self._tok(header, add_special_tokens=False)["input_ids"][: limit - 4]
                header = self._tok.decode(ids) + "..."
                n = self.count_tokens(header) + 1
            cache[key] = (header, n)
        return cache[key]

    def split_one(self, doc: Document) -> list[Document]:
        return list(self.iter_split(doc))

    def iter_split(self, doc: Document) -> Iterator[Document]:
        """The chunks of ``doc`` one by one. A section is tokenised in blocks of
        :data:`BLOCK_CHARS` characters cut at paragraph breaks (:func:`blocks`), so memory stays
        bounded on a long file (a chunk's overlap does not cross a block's end)."""
        self.load()
        text = doc.text
        pages = doc.metadata.get("pages")
        starts = [p[0] for p in pages] if pages else []
        base = {k: v for k, v in doc.metadata.items() if k != "pages"}
        headers: dict[tuple[str, ...], tuple[str, int]] = {}
        n = 0
        for s, e, path in sections(text):
            header, n_header = self._header(doc, path, headers)
            budget = self.size - n_header - self.reserve_tokens
            for lo, hi in blocks(text, s, e):
                count = TokenCounter(self._tok, text, lo, hi)
                pieces = _pieces(text, lo, hi, budget, count)
                for a, b in pack(pieces, budget, self.chunk_overlap, count):
                    meta = {
                        **base,
                        "parent_id": doc.id,
                        "chunk": n,
                        "start": a,
                        "end": b,
                        "headings": list(path),
                        "doc_title": doc.title,
                    }
                    if starts:
                        meta["page"] = max(1, bisect.bisect_right(starts, a))
                    yield Document(id=f"{doc.id}#{n}", text=text[a:b], title=header, metadata=meta)
                    n += 1

    def split(self, docs: Sequence[Document]) -> list[Document]:
        """All chunks of ``docs``, in document order."""
        return [c for d in docs for c in self.split_one(d)]


def find_encoder(node: Any) -> Any:
    """The first :class:`~rag.core.encoders.TransformerEncoder` inside a retriever (dense, hybrid,
    parents: any composite's children)."""
    from rag.core.encoders import TransformerEncoder

    if isinstance(node, TransformerEncoder):
        return node
    enc = getattr(node, "encoder", None)
    if isinstance(enc, TransformerEncoder):
        return enc
    for child in getattr(node, "retrievers", None) or getattr(node, "children", None) or []:
        found = find_encoder(child)
        if found is not None:
            return found
    return None
