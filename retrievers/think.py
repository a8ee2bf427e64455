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
index (a JSONL file beside the inner retriever's state) so a reopened index does not generate
them again; each output's ``Ranking.provenance["thought"]`` is the thought its query used. The
inner retriever reads this node's document store (a
:class:`~retrievers.composite.CompositeRetriever` with one child and the ``_fuse`` hook).

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
from rag.core.errors import ConfigError
from rag.core.nodes import BaseRetriever, Node, candidate_depth, check_k
from rag.core.types import Query, Ranking
from rag.index.persist import iter_jsonl
from retrievers.composite import CompositeRetriever
from retrievers.fusion import rrf

MODES = ("query", "thought", "fusion")
TEMPLATE = "think"


class ThinkRetriever(CompositeRetriever):
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

    @property
    def children(self) -> list[BaseRetriever]:
        """The inner retriever: it reads this node's documents (held and saved once)."""
        return [self.retriever]

    @property
    def uses_instruction(self) -> bool:  # type: ignore[override]
        """The instruction goes into the thought prompt (or, in ``query`` mode, to the inner
        retriever alone)."""
        return self.mode != "query" or bool(getattr(self.retriever, "uses_instruction", False))

    def candidate_depth(self, k: int) -> int:
        """``candidates`` deep in ``fusion`` mode, else ``k`` (one ranking, nothing to fuse)."""
        return candidate_depth(k, self.candidates) if self.mode == "fusion" else k

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

    # -- persistence: the inner retriever's state and the thoughts ---------------------------------
    def _thought_rows(self) -> str:
        rows = [
            json.dumps({"query": q, "instruction": i, "thought": t})
            for (q, i), t in self._thoughts.items()
        ]
        return "".join(r + "\n" for r in rows)

    def _read_thoughts(self, path: Path) -> None:
        self._thoughts.clear()
        if path.exists():
            for _, row in iter_jsonl(path):
                self._thoughts[(row["query"], row["instruction"])] = row["thought"]

    def _commit_state(self, commit: Any, part: str) -> dict[str, Any]:
        state = super()._commit_state(commit, part)
        name = commit.new_name(f"{part}-thoughts.jsonl")
        commit.put_bytes(name, self._thought_rows().encode("utf-8"))
        return {**state, "thoughts": name}

    def _open_state(self, folder: Path, state: dict[str, Any]) -> None:
        if "dir" in state:  # an index saved before think shared its store: a snapshot folder
            self._load_state(folder / state["dir"])
            return
        super()._open_state(folder, state)
        self._read_thoughts(folder / state["thoughts"])

    def _load_state(self, path: Path) -> None:
        """A snapshot folder written before think shared its store: ``inner`` (a saved index)
        and ``thoughts.jsonl``."""
        from rag.index.persist import load_retriever

        self.retriever = load_retriever(path / "inner")
        self._read_thoughts(path / "thoughts.jsonl")

    def _fuse(
        self, queries: list[Query], k: int, depth: int, filter: dict[str, Any] | None
    ) -> list[Ranking]:
        if self.mode == "query":
            return self._ask(self.children, queries, k, filter)[0]
        thoughts = [self.thought(q) for q in queries]
        expanded = [
            q.model_copy(update={"text": f"{q.text}\n{t}".strip()})
            for q, t in zip(queries, thoughts, strict=True)
        ]
        if self.mode == "thought":
            out = self._ask(self.children, expanded, k, filter)[0]
        else:
            plain = self._ask(self.children, queries, depth, filter)[0]
            thought = self._ask(self.children, expanded, depth, filter)[0]
            out = [rrf([a, b], k, rrf_k=self.rrf_k) for a, b in zip(plain, thought)]
        # the thought used travels with its query's ranking (never on the shared node)
        return [
            r.model_copy(update={"provenance": {**r.provenance, "thought": t}})
            for r, t in zip(out, thoughts, strict=True)
        ]
