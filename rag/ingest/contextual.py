"""LLM-written situating sentences for chunks: Anthropic's "Contextual Retrieval" (2024).

For each chunk, a generator reads the whole document (cut to ``max_doc_chars``) and the chunk
with Anthropic's published prompt (``prompts/templates/situate_chunk.txt``) and writes one short
context; it is prepended to the chunk's contextual header (its ``title``), so BM25 and the
encoder index ``header. context chunk`` while ``text`` stays the exact source span.

Sentences are cached on disk by content hash: SHA-256 of (generator model, prompt version,
document text, chunk text), one small file each, written atomically. Re-indexing unchanged text
never calls the model again; a changed prompt or model never reuses a stale sentence.
The cache lives under ``$RAGNODES_CACHE/situate`` unless ``cache_dir`` says otherwise.

>>> s = Situator(max_new_tokens=40)
>>> chunks = s.situate(doc, Chunker().split_one(doc))        # doctest: +SKIP
>>> chunks[1].metadata["situating"]                           # doctest: +SKIP
'This chunk describes Mars in the notes on the Solar System.'
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any, ClassVar

import prompts
from rag.core.errors import ConfigError
from rag.core.nodes import Node
from rag.core.types import Document

TEMPLATE = "situate_chunk"


class Situator(Node):
    """Write one situating sentence per chunk with a generator (module docstring).

    Args:
        model: the generator model (short name, HF id or path) of a local
            :class:`~rag.generators.TransformersGenerator`.
        max_new_tokens: the sentence's length limit.
        max_doc_chars: characters of the document shown (its start; the chunk is always shown).
        cache_dir: where sentences are cached (default ``$RAGNODES_CACHE/situate``).
    """

    name: ClassVar[str] = "situator"
    kind: ClassVar[str] = "contextualizer"

    def __init__(
        self,
        model: str = "smollm2-135m",
        max_new_tokens: int = 48,
        max_doc_chars: int = 6000,
        cache_dir: str | None = None,
    ) -> None:
        if max_new_tokens < 1 or max_doc_chars < 1:
            raise ConfigError(
                f"max_new_tokens and max_doc_chars must be >= 1, got {max_new_tokens}, "
                f"{max_doc_chars}"
            )
        self.model = model
        self.max_new_tokens = max_new_tokens
        self.max_doc_chars = max_doc_chars
        self.cache_dir = cache_dir
        self.generated = 0
        self.cached = 0

    def _load(self) -> None:
        if not hasattr(self, "generator"):
            from rag.generators import TransformersGenerator

            self.generator = TransformersGenerator(self.model, max_new_tokens=self.max_new_tokens)

    def use(self, generator: Any) -> Situator:
        """Write with an already loaded generator (shares its weights)."""
        self.generator = generator
        return self

    def _dir(self) -> Path:
        from rag.core.models import cache_dir

        return Path(self.cache_dir) if self.cache_dir else cache_dir() / "situate"

    def key(self, doc: Document, chunk: Document) -> str:
        h = hashlib.sha256()
        for part in (self.model, prompts.version(TEMPLATE), doc.text, "\0", chunk.text):
            h.update(part.encode("utf-8"))
        return h.hexdigest()

    def sentence(self, doc: Document, chunk: Document) -> str:
        """The situating sentence for ``chunk`` of ``doc`` (cached)."""
        from rag.index.persist import atomic_write_text

        path = self._dir() / f"{self.key(doc, chunk)}.txt"
        if path.exists():
            self.cached += 1
            return path.read_text(encoding="utf-8")
        self.load()
        user = prompts.render(TEMPLATE, document=doc.text[: self.max_doc_chars], chunk=chunk.text)
        text = self.generator.generate(
            [{"role": "user", "content": user}], max_new_tokens=self.max_new_tokens
        )
        text = re.sub(r"\s+", " ", text).strip()
        atomic_write_text(path, text)
        self.generated += 1
        return text

    def situate(self, doc: Document, chunks: list[Document]) -> list[Document]:
        """``chunks`` of ``doc`` with the sentence after their header in ``title`` and in
        ``metadata["situating"]``."""
        out = []
        for c in chunks:
            s = self.sentence(doc, c)
            title = f"{c.title}. {s}" if c.title and s else (c.title or s)
            out.append(
                c.model_copy(update={"title": title, "metadata": {**c.metadata, "situating": s}})
            )
        return out
