"""Late-interaction reranker: exact MaxSim between the query and each candidate's token vectors.

Documents are encoded when they are first seen; the vectors of the last ``cache_size`` documents
(keyed by id and text) are kept in float16, so reranking the same pool for many queries encodes
each document once. Scores always use the float16-rounded vectors (as the token store does), so
they never depend on what is cached.

>>> from rag.types import Document, Query, Ranking, Hit
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
from typing import Any, ClassVar

import numpy as np

from rag.errors import ConfigError
from rag.nodes import BaseReranker
from rag.types import Document, Query
from retrievers.multivector.encoder import TokenEncoder
from retrievers.multivector.maxsim import maxsim_lists


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
        return maxsim_lists(q, self.document_vectors(docs))[0].tolist()
