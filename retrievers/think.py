"""Think-then-retrieve: a generator writes a short thought for the query, retrieval uses it.

O1 Embedder (Yan et al. 2024, "O1 Embedder: Let Retrievers Think Before Action") has the model
write a brief reasoning about the query and embeds query and thought together; HyDE (Gao et al.
2022, "Precise Zero-Shot Dense Retrieval without Relevance Labels") retrieves with a hypothetical
answer. :class:`ThinkRetriever` wraps any retriever and any generator:

* ``mode="query"``: the inner retriever on the query alone (the baseline; no generation);
* ``mode="thought"``: on ``query.text + "\\n" + thought`` (O1 Embedder's input; the query is kept
  so that an empty or off-topic thought cannot lose the question);
* ``mode="fusion"``: reciprocal-rank fusion (:func:`retrievers.fusion.rrf`) of both rankings,
  each ``candidates`` deep.

The query's instruction goes into the generation prompt (template ``prompts/templates/think.txt``)
and stays on the queries sent to the inner retriever. Thoughts are cached per
``(query text, instruction)``, the ``cache_size`` most recently used kept, and saved with the
index (``thoughts.jsonl``) so a reopened index does not generate them again; ``last_thoughts``
maps the ids of the last batch's queries to the thought used.

>>> from retrievers import BM25Retriever
>>> from rag.generators import TransformersGenerator
>>> r = ThinkRetriever(BM25Retriever(), TransformersGenerator(max_new_tokens=48))
>>> r.index(docs).retrieve("largest planet").ids      # doctest: +SKIP
"""

from __future__ import annotations

import json
from collections import OrderedDict
from pathlib import Path
from typing import Any, ClassVar

import prompts
from prompts.instructions import instruction_line
from rag.errors import ConfigError
from rag.nodes import BaseRetriever, Node, check_k
from rag.persist import atomic_write_text, iter_jsonl
from rag.types import Document, Query
from retrievers.fusion import rrf

MODES = ("query", "thought", "fusion")
TEMPLATE = "think"


class ThinkRetriever(BaseRetriever):
    """Retrieve with a generated thought about the query.

    Args:
        retriever: the inner retriever (it holds the index).
        generator: a Generator node (``generate(messages, max_new_tokens=...) -> str``).
        mode: ``query`` | ``thought`` | ``fusion``.
        max_new_tokens: thought length budget (``None``: the generator's own default).
        candidates: depth of each inner ranking fused in ``fusion`` mode (at least ``k``).
        rrf_k: the RRF constant.
        cache_size: thoughts kept (least recently used dropped first); 0 disables the cache.
    """

    name: ClassVar[str] = "think"
    uses_instruction: ClassVar[bool] = True

    @property
    def matching_only(self) -> bool:
        """As the inner retriever: fused rankings of a lexical retriever stay lexical."""
        return bool(getattr(self.retriever, "matching_only", False))

    def __init__(
        self,
        retriever: Any,
        generator: Any,
        mode: str = "fusion",
        max_new_tokens: int | None = None,
        candidates: int = 100,
        rrf_k: int = 60,
        cache_size: int = 10000,
    ) -> None:
        if mode not in MODES:
            raise ConfigError(f"mode must be one of {MODES}, got {mode!r}")
        if not isinstance(retriever, BaseRetriever):
            raise ConfigError(f"retriever must be a retriever node, got {type(retriever).__name__}")
        if not isinstance(generator, Node) or not hasattr(generator, "generate"):
            raise ConfigError(f"generator must be a generator node, got {type(generator).__name__}")
        if max_new_tokens is not None:
            check_k(max_new_tokens)
        check_k(candidates)
        if isinstance(cache_size, bool) or not isinstance(cache_size, int) or cache_size < 0:
            raise ConfigError(f"cache_size must be an int >= 0, got {cache_size!r}")
        self.retriever = retriever
        self.generator = generator
        self.mode = mode
        self.max_new_tokens = max_new_tokens
        self.candidates = candidates
        self.rrf_k = rrf_k
        self.cache_size = cache_size
        self._thoughts: OrderedDict[tuple[str, str | None], str] = OrderedDict()
        self.last_thoughts: dict[str, str] = {}

    def _load(self) -> None:
        self.retriever.load()

    def _add(self, docs: list[Document]) -> None:
        self.retriever.index(docs)

    def _delete(self, ids: list[str]) -> None:
        self.retriever.delete(ids)

    def prompt(self, query: Query) -> list[dict[str, str]]:
        """The chat messages that ask for the thought."""
        text = prompts.render(TEMPLATE, instruction=instruction_line(query), query=query.text)
        return [{"role": "user", "content": text}]

    def thought(self, query: Query) -> str:
        """The (cached) thought for ``query``; generated on the first call."""
        key = (query.text, query.instruction)
        if key in self._thoughts:
            self._thoughts.move_to_end(key)
            return self._thoughts[key]
        out = self.generator.generate(self.prompt(query), max_new_tokens=self.max_new_tokens)
        thought = " ".join(out.split())
        if self.cache_size:
            self._thoughts[key] = thought
            while len(self._thoughts) > self.cache_size:
                self._thoughts.popitem(last=False)
        return thought

    def _save_state(self, path: Path) -> None:
        self.retriever.save(path / "inner")
        rows = [
            json.dumps({"query": q, "instruction": i, "thought": t})
            for (q, i), t in self._thoughts.items()
        ]
        atomic_write_text(path / "thoughts.jsonl", "".join(r + "\n" for r in rows))

    def _load_state(self, path: Path) -> None:
        from rag.persist import load_retriever

        self.retriever = load_retriever(path / "inner")
        self._thoughts.clear()
        if (path / "thoughts.jsonl").exists():
            for _, row in iter_jsonl(path / "thoughts.jsonl"):
                self._thoughts[(row["query"], row["instruction"])] = row["thought"]

    def _search(
        self, queries: list[Query], k: int, filter: dict | None
    ) -> list[list[tuple[str, float]]]:
        if self.mode == "query":
            self.last_thoughts = {}
            rankings = self.retriever.retrieve_batch(queries, k=k, filter=filter)
            return [list(zip(r.ids, r.scores)) for r in rankings]
        self.last_thoughts = {q.id: self.thought(q) for q in queries}
        expanded = [
            q.model_copy(update={"text": f"{q.text}\n{self.last_thoughts[q.id]}".strip()})
            for q in queries
        ]
        if self.mode == "thought":
            rankings = self.retriever.retrieve_batch(expanded, k=k, filter=filter)
            return [list(zip(r.ids, r.scores)) for r in rankings]
        depth = max(k, self.candidates)
        plain = self.retriever.retrieve_batch(queries, k=depth, filter=filter)
        thought = self.retriever.retrieve_batch(expanded, k=depth, filter=filter)
        fused = [rrf([a, b], rrf_k=self.rrf_k) for a, b in zip(plain, thought)]
        return [list(zip(r.ids, r.scores)) for r in fused]
