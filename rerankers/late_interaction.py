"""Late-interaction reranker: exact MaxSim between the query and each candidate's token vectors.

The default path reads token vectors computed at index time: :meth:`index_documents` (which
``Pipeline.index`` calls) encodes the collection once into a :class:`TokenStore` beside the first
stage, saved and reopened with the pipeline (``use_token_store`` attaches an existing one, e.g. a
multi-vector index's), so a query only encodes itself and reads its candidates' rows (ColBERT's
precomputed document representations; Khattab & Zaharia, SIGIR 2020). Documents missing from the
store (or whose text changed) are encoded when first seen; the vectors of the last ``cache_size``
such documents (keyed by id and text) are kept in float16. Scores always use the float16-rounded
vectors (as the token store does), so they never depend on where the vectors came from.

>>> from rag.core.types import Document, Query, Ranking, Hit
>>> rr = LateInteractionReranker()                       # packaged MiniLM token vectors
>>> r = Ranking(query=Query(text="late interaction"),
...             hits=(Hit(document=Document(id="a", text="late interaction"), score=0.0),))
>>> rr.rerank(r).ids                                      # doctest: +SKIP
['a']
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from rag.core.errors import ConfigError
from rag.core.nodes import BaseReranker
from rag.core.types import Document, Query
from retrievers.kernels.maxsim import maxsim_lists
from retrievers.multivector.encoder import TokenEncoder
from retrievers.multivector.token_store import TokenStore


class LateInteractionReranker(BaseReranker):
    """Re-score another retriever's candidates by MaxSim.

    Args:
        encoder: a :class:`TokenEncoder` (default: packaged MiniLM token vectors).
        cache_size: documents whose token vectors are kept between calls (0 disables).
    """

    name: ClassVar[str] = "late_interaction"

    def __init__(self, encoder: Any = None, cache_size: int = 4096) -> None:
        if isinstance(cache_size, bool) or not isinstance(cache_size, int) or cache_size < 0:
            raise ConfigError(f"cache_size must be an int >= 0, got {cache_size!r}")
        self.encoder = encoder if encoder is not None else TokenEncoder()
        if not isinstance(self.encoder, TokenEncoder):
            raise ConfigError(f"encoder must be a TokenEncoder, got {type(encoder).__name__}")
        self.cache_size = cache_size
        self._cache: OrderedDict[tuple[str, str], np.ndarray] = OrderedDict()
        self.token_store: TokenStore | None = None  # vectors computed at index time

    # -- the index-time token store -------------------------------------------------------------
    def index_documents(self, docs: Sequence[Document], batch: int = 256) -> None:
        """Encode ``docs`` once, at index time, into the token store the reranker reads."""
        self.load()
        store = self.token_store if self.token_store is not None else TokenStore()
        for s in range(0, len(docs), batch):
            chunk = docs[s : s + batch]
            vecs = self.encoder.encode_documents([d.full_text for d in chunk])
            store.add([d.id for d in chunk], vecs, [{"text_key": self._key(d)[1]} for d in chunk])
        self.token_store = store

    def use_token_store(self, store: TokenStore) -> None:
        """Read candidates' vectors from ``store`` (built by this same encoder)."""
        if not isinstance(store, TokenStore):
            raise ConfigError(f"store must be a TokenStore, got {type(store).__name__}")
        self.token_store = store

    def delete_documents(self, ids: Sequence[str]) -> None:
        if self.token_store is not None:
            self.token_store.delete(ids)

    # the token store commits with the index (rag.index): append segments, checksummed
    def _commit_state(self, commit: Any, part: str) -> dict[str, Any] | None:
        if self.token_store is None:
            return None
        return {"tokens": self.token_store.commit(commit, part)}

    def _open_state(self, folder: Path, state: dict[str, Any] | None) -> None:
        if state is None:
            self.token_store = None
            return
        store = TokenStore(dtype=state["tokens"]["dtype"])
        store.open(folder, state["tokens"])
        self.token_store = store

    def _stored(self, docs: Sequence[Document]) -> list[bool]:
        """Which ``docs`` the token store holds with the same text (payload ``text_key``; stores
        without it, e.g. a retriever's, are trusted by id)."""
        st = self.token_store
        if st is None:
            return [False] * len(docs)
        out = []
        for d in docs:
            row = st._row.get(d.id)
            key = None if row is None else st._payloads[row].get("text_key")
            out.append(row is not None and key in (None, self._key(d)[1]))
        return out

    def _load(self) -> None:
        self.encoder.load()

    def _key(self, doc: Document) -> tuple[str, str]:
        return doc.id, hashlib.blake2b(doc.full_text.encode(), digest_size=8).hexdigest()

    def document_vectors(self, docs: Sequence[Document]) -> list[np.ndarray]:
        """Token matrices ``(L_i, D)`` of ``docs``, from the cache where possible."""
        keys = [self._key(d) for d in docs]
        todo = [j for j, key in enumerate(keys) if key not in self._cache]
        fresh = self.encoder.encode_documents([docs[j].full_text for j in todo])
        # vectors are rounded to float16 whether cached or not, so scores never depend on the cache
        got = {keys[j]: v.astype(np.float16) for j, v in zip(todo, fresh, strict=True)}
        out = []
        for key in keys:
            v16 = got[key] if key in got else self._cache[key]
            if self.cache_size:
                self._cache[key] = v16
                self._cache.move_to_end(key)
            out.append(v16.astype(np.float32))
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return out

    def cache_vectors(self, docs: Sequence[Document], vectors: Sequence[np.ndarray]) -> None:
        """Seed the cache with token matrices computed elsewhere by this same encoder (e.g. a
        multi-vector index's ``TokenStore.get``), so reranking does not encode them again."""
        if len(vectors) != len(docs):
            raise ConfigError(f"need one matrix per document: {len(docs)} docs, {len(vectors)}")
        for d, v in zip(docs, vectors, strict=True):
            self._cache[self._key(d)] = np.asarray(v, dtype=np.float16)
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)

    def _score(self, query: Query, docs: list[Document]) -> Sequence[float]:
        q = self.encoder.encode_queries([query.text])
        stored = self._stored(docs)
        if docs and all(stored):  # the index-time path: no document is encoded
            assert self.token_store is not None
            return self.token_store.score(q[0], [d.id for d in docs]).tolist()
        vecs = self.document_vectors([d for d, s in zip(docs, stored, strict=True) if not s])
        if any(stored):
            assert self.token_store is not None
            got = iter(self.token_store.get([d.id for d, s in zip(docs, stored, strict=True) if s]))
            fresh = iter(vecs)
            vecs = [next(got) if s else next(fresh) for s in stored]
        return maxsim_lists(q, vecs)[0].tolist()
