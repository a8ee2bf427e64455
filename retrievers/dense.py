"""Dense (bi-encoder) retrieval: a transformer encoder over a vector store.

Documents are embedded as ``title + " " + text`` (BEIR / MTEB convention) and searched by inner
product of normalised vectors (cosine). Queries carry the encoder's query prefix; an instruction
template (``instruction_template``, e.g. ``"Instruct: {instruction}\\nQuery: {query}"``) is applied
to queries only when set, as instruction-tuned embedders specify.

>>> r = DenseRetriever()                     # packaged all-MiniLM-L6-v2, exact numpy store
>>> r.index(docs).retrieve("what is bm25")   # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from tqdm.auto import tqdm

from rag.core.encoders import TransformerEncoder
from rag.core.errors import ConfigError
from rag.core.nodes import BaseRetriever, Node
from rag.core.types import Document, Query, ScoredIds
from retrievers.stores.exact import ExactStore
from retrievers.stores.qdrant import QdrantStore
from retrievers.stores.segments import VectorSegments


class DenseRetriever(BaseRetriever):
    """Bi-encoder retrieval.

    Args:
        encoder: a :class:`~rag.core.encoders.TransformerEncoder` (default: packaged MiniLM).
        store: an ``ExactStore`` (default) or ``QdrantStore``.
        fields: ``title+text`` or ``text``.
        instruction_template: format string with ``{query}`` and ``{instruction}`` applied to
            queries that carry an instruction; ``None`` ignores instructions (and says so);
            ``"auto"`` applies the encoder's family template from ``prompts/instructions.yaml``
            to every query (a family name from that file overrides the model-id match).
        index_batch: documents embedded per progress step.
        show_progress: progress bar while indexing (``None``: when stderr is a terminal).
    """

    name: ClassVar[str] = "dense"

    def __init__(
        self,
        encoder: TransformerEncoder | None = None,
        store: Any = None,
        fields: str = "title+text",
        instruction_template: str | None = None,
        index_batch: int = 1024,
        show_progress: bool | None = None,
    ) -> None:
        if fields not in ("title+text", "text"):
            raise ConfigError(f"fields must be 'title+text' or 'text', got {fields!r}")
        if instruction_template is not None and "{query}" not in instruction_template:
            from prompts.instructions import families

            if instruction_template != "auto" and instruction_template not in families():
                raise ConfigError(
                    "instruction_template must contain '{query}', be 'auto' or name a family "
                    f"({', '.join(families())}); got {instruction_template!r}"
                )
        self.encoder = encoder if encoder is not None else TransformerEncoder()
        self.store = store if store is not None else ExactStore()
        if not isinstance(self.store, Node) or not hasattr(self.store, "search"):
            raise ConfigError(f"store must be a vector store node, got {type(store).__name__}")
        self.fields = fields
        self.instruction_template = instruction_template
        self.index_batch = index_batch
        self.show_progress = show_progress

    @property
    def uses_instruction(self) -> bool:  # type: ignore[override]
        family = self._family_template()
        if family is not None:
            return bool(family.uses_task)
        return self.instruction_template is not None

    def _family_template(self) -> Any:
        """The ``prompts.instructions`` template when ``instruction_template`` is not a format
        string ("auto" or a family name), else ``None``."""
        t = self.instruction_template
        if t is None or "{query}" in t:
            return None
        from prompts.instructions import template_for

        return template_for(self.encoder.model, family=None if t == "auto" else t)

    def _load(self) -> None:
        self.encoder.load()

    def query_text(self, q: Query) -> str:
        family = self._family_template()
        if family is not None:
            from prompts.instructions import format_query

            return format_query(family, q)
        if q.instruction and self.instruction_template is not None:
            return self.instruction_template.format(query=q.text, instruction=q.instruction)
        return q.text

    def _add(self, docs: list[Document]) -> None:
        show = self.show_progress
        # None: a bar when stderr is a terminal (tqdm's own test), so interactive indexing shows it
        bar = tqdm(
            total=len(docs),
            desc="embedding",
            unit="doc",
            disable=None if show is None else not show,
        )
        for s in range(0, len(docs), self.index_batch):
            chunk = docs[s : s + self.index_batch]
            texts = [d.full_text if self.fields == "title+text" else d.text for d in chunk]
            vecs = self.encoder.encode(texts, kind="document")
            self.store.add([d.id for d in chunk], vecs, [{"metadata": d.metadata} for d in chunk])
            self._segments().add([d.id for d in chunk])
            bar.update(len(chunk))
        bar.close()

    def _delete(self, ids: list[str]) -> None:
        self.store.delete(ids)
        self._segments().delete(ids)

    def _retrieve(self, queries: list[Query], k: int, filter: dict[str, Any] | None) -> Any:
        if queries and not self.documents and isinstance(self.store, QdrantStore):
            held = self.store.count()  # a collection another process filled: never a silent []
            if held:
                where = self.store.url or self.store.path or self.store.location
                raise ConfigError(
                    f"DenseRetriever: Qdrant collection {self.store.collection!r} at {where!r} "
                    f"holds {held} points but this retriever has no documents; open the index "
                    "folder that wrote it (`Pipeline.open(IDX)`, `rag search IDX`), or use "
                    "QdrantHybridRetriever, which reads documents from the payload"
                )
        return super()._retrieve(queries, k, filter)

    def _search(self, queries: list[Query], k: int, filter: dict | None) -> list[ScoredIds]:
        vecs = self.encoder.encode([self.query_text(q) for q in queries], kind="query")
        # arrays, not pairs: the ranking reads documents for its top k only and builds no Hit
        # objects until they are read (rag.core.types: a hybrid's children hand fusion arrays)
        return [
            ScoredIds([i for i, _ in hits], np.array([s for _, s in hits], dtype=np.float64))
            for hits in self.store.search(vecs, k, filter)
        ]

    # -- persistence: an ExactStore's vectors are appended as segments (rag.index) -------------
    def _segments(self) -> VectorSegments:
        if getattr(self, "_vsegs", None) is None:
            self._vsegs = VectorSegments()
        return self._vsegs

    def _commit_state(self, commit: Any, part: str) -> dict[str, Any]:
        if not isinstance(self.store, ExactStore):
            state = super()._commit_state(commit, part)  # Qdrant persists itself ...
            if isinstance(self.store, QdrantStore):  # ... and the manifest records what it holds
                state["store"] = self.store.state()
            return state
        return {"vectors": self._segments().commit(commit, part, self.store)}

    def _open_state(self, folder: Path, state: dict[str, Any]) -> None:
        if "vectors" not in state:
            super()._open_state(folder, state)
            if "store" in state and isinstance(self.store, QdrantStore):
                self.store.check(state["store"], folder)  # as committed, or one line
            return
        self._segments().open(folder, state["vectors"], self.store, self.documents)

    def _save_state(self, path: Path) -> None:
        self.store.save(path / "store")

    def _load_state(self, path: Path) -> None:
        self.store.restore(path / "store")
