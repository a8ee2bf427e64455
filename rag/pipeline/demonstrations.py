"""Few-shot demonstrations chosen by retrieval from a pool of solved examples.

Seed: Unified Demonstration Retriever (UDR; Li et al., ACL 2023), which ranks a task's training
examples by their similarity to the test input with one retriever shared across tasks and puts the
top ones into the prompt. This node keeps that shape without UDR's trained ranker: any ragnodes
retriever (BM25 by default, dense with ``DenseRetriever()``) indexes the demonstrations' *inputs*,
and the top-k become alternating user/assistant turns before the real question.

A demonstration is ``{"id", "input", "output", "context"}``: ``input`` is what is matched and
asked (a question, a claim), ``context`` the optional source texts shown with it (rendered by the
caller's prompt, so they pass through the same escaping as real sources), ``output`` the answer.

>>> sel = DemonstrationSelector(demos=[{"id": "d1", "input": "capital of France?",
...                                     "output": "Paris [1]."}], k=1)
>>> [d.id for d in sel.select("What is the capital of France?")]
['d1']
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field

from rag.core.errors import ConfigError
from rag.core.nodes import Node, check_k
from rag.core.types import Document, Query, as_query


class Demonstration(BaseModel):
    """One solved example: the input (matched and shown), its contexts and its output."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    id: str
    input: str
    output: str
    context: tuple[str, ...] = ()
    metadata: dict[str, Any] = Field(default_factory=dict)


class DemonstrationSelector(Node):
    """Index a demonstration pool and return the ``k`` demonstrations nearest to a query.

    Args:
        demos: the pool, as dicts (JSON-safe, so the pool round-trips with the config), or
        path: a JSONL file of demonstrations (used when ``demos`` is None).
        retriever: ranks demonstrations by their ``input`` (default: BM25).
        k: demonstrations per prompt.
    """

    name: ClassVar[str] = "demonstration_selector"
    kind: ClassVar[str] = "demonstrations"

    def __init__(
        self,
        demos: list[dict[str, Any]] | None = None,
        path: str | None = None,
        retriever: Any = None,
        k: int = 2,
    ) -> None:
        check_k(k)
        if demos is None and path is None:
            raise ConfigError("give a demonstration pool: demos=[...] or path='demos.jsonl'")
        self.demos = [dict(d) for d in demos] if demos is not None else None
        self.path = path
        self.retriever = retriever
        self.k = k

    def _load(self) -> None:
        if self.demos is not None:
            rows = self.demos
        else:
            from rag.index.persist import read_jsonl

            if self.path is None:  # __init__ already requires one of them
                raise ConfigError("DemonstrationSelector needs demos or path")
            rows = read_jsonl(self.path)
        pool = [Demonstration(**{**r, "context": tuple(r.get("context") or ())}) for r in rows]
        ids = [d.id for d in pool]
        if len(set(ids)) != len(ids):
            raise ConfigError("demonstration ids must be unique")
        self._pool = {d.id: d for d in pool}
        if self.retriever is None:
            from retrievers import BM25Retriever

            self._retriever = BM25Retriever()
        else:
            self._retriever = self.retriever
        self._retriever.index([Document(id=d.id, text=d.input) for d in pool])

    def __len__(self) -> int:
        self.load()
        return len(self._pool)

    def select(
        self, query: Query | str, k: int | None = None, exclude: Sequence[str] = ()
    ) -> list[Demonstration]:
        """The ``k`` nearest demonstrations, most similar first; ids in ``exclude`` (e.g. the
        test example itself, when pool and test overlap) are never returned. When fewer than
        ``k`` share a term with the query (a lexical retriever ranks only those), the rest of
        the pool follows in its own order, so a prompt always gets ``k`` shots."""
        self.load()
        k = check_k(k) if k is not None else self.k
        skip = set(exclude)
        ranking = self._retriever.retrieve(as_query(query), k=k + len(skip))
        ids = [i for i in ranking.ids if i not in skip]
        if len(ids) < k:
            seen = set(ids)
            ids += [i for i in self._pool if i not in skip and i not in seen]
        return [self._pool[i] for i in ids[:k]]


def demo_turns(
    demos: Sequence[Demonstration], render_user: Callable[[Demonstration], str]
) -> list[dict[str, str]]:
    """Alternating user/assistant turns, one pair per demonstration, in the order given
    (``render_user`` builds the user turn the same way the real question's turn is built)."""
    turns: list[dict[str, str]] = []
    for d in demos:
        turns.append({"role": "user", "content": render_user(d)})
        turns.append({"role": "assistant", "content": d.output})
    return turns
