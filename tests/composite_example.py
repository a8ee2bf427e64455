"""A composite retriever written the way a new one is: one file, one hook (``_fuse``).

CombMNZ (Fox & Shaw, "Combination of Multiple Searches", TREC-2 1994; min-max normalisation as
Lee, SIGIR 1997): ``score(d) = |{i : d in R_i}| * sum_i minmax_i(s_i(d))``. Everything else
(request checks, candidate depth, shared document store, indexing, persistence, instruction and
filter support) comes from :class:`retrievers.composite.CompositeRetriever`; the contract suite
(``tests/contract_factories.py``, ``combmnz-example``) checks it like every other retriever.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from rag.core.errors import ConfigError
from rag.core.types import Document, Query, Ranking
from retrievers.composite import CompositeRetriever
from retrievers.fusion import normalize


class CombMNZRetriever(CompositeRetriever):
    """CombMNZ of child retrievers (each asked for ``depth`` candidates, at least ``k``)."""

    name: ClassVar[str] = "combmnz_example"

    def __init__(self, retrievers: list[Any], depth: int | None = None) -> None:
        if not retrievers:
            raise ConfigError("CombMNZRetriever needs at least one retriever")
        self.retrievers = list(retrievers)
        self.depth = depth

    def _fuse(
        self, queries: list[Query], k: int, depth: int, filter: dict[str, Any] | None
    ) -> list[Ranking]:
        per_child = self._ask(self.children, queries, depth, filter)
        out = []
        for i, q in enumerate(queries):
            total: dict[str, float] = {}
            count: dict[str, int] = {}
            docs: dict[str, Document] = {}
            for r in (p[i] for p in per_child):
                for h, s in zip(r.hits, normalize(np.asarray(r.scores, np.float64), "minmax")):
                    total[h.id] = total.get(h.id, 0.0) + float(s)
                    count[h.id] = count.get(h.id, 0) + 1
                    docs.setdefault(h.id, h.document)
            scored = ((docs[d], count[d] * total[d]) for d in total)
            out.append(Ranking.from_scored(q, scored, k, self.name))
        return out
