"""The pipeline: retriever -> rerankers -> compressors -> generator, as one configurable node.

>>> from retrievers import BM25Retriever
>>> p = Pipeline(retriever=BM25Retriever(), k=3)
>>> p.index(docs).search("largest planet").ids        # doctest: +SKIP
>>> p.ask("What is the largest planet?").citations    # doctest: +SKIP

``run_stages`` returns the ranking after every stage, which ``evals`` scores stage by stage.
A query's instruction that a stage cannot use is reported with a warning, never dropped silently.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, ClassVar

import prompts
from rag.citations import attribute, resolve
from rag.demonstrations import Demonstration, demo_turns
from rag.errors import ConfigError
from rag.grounding import escape_source_text
from rag.nodes import Node, check_k, check_query
from rag.types import Answer, Document, Hit, Query, Ranking, TraceStep

ANSWER_STOPS = ("\n\n", "\n[")


def format_sources(hits: Sequence[Hit], max_chars: int) -> str:
    """One line per context, ``[n] title: text``. Titles and texts are escaped
    (:func:`rag.grounding.escape_source_text`): retrieved text is data and can neither end its
    line (the delimiter), open a chat role, nor show the model a citation marker."""
    parts = []
    for n, h in enumerate(hits, 1):
        title = escape_source_text(h.document.title)
        text = (
            h.document.text
            if len(h.document.text) <= max_chars
            else h.document.text[:max_chars] + "..."
        )
        parts.append(
            prompts.render(
                "answer_source",
                n=n,
                title=f"{title}: " if title else "",
                text=escape_source_text(text),
            )
        )
    return "\n".join(parts)


def context_hits(demo: Demonstration) -> list[Hit]:
    """A demonstration's context texts as hits, so they are numbered and escaped like sources."""
    return [
        Hit(document=Document(id=f"{demo.id}:{i}", text=t), score=0.0)
        for i, t in enumerate(demo.context)
    ]


class Pipeline(Node):
    """Compose nodes into search and question answering.

    Args:
        retriever: first-stage retriever (BM25, dense, hybrid, multi-vector...).
        rerankers: applied in order to the retrieved candidates.
        compressors: applied in order to the final contexts.
        generator: answers questions (``ask``); optional for search-only pipelines.
        k: contexts given to the generator / hits returned by ``search``.
        candidates: hits retrieved before reranking (default ``max(k, 50)`` with rerankers).
        max_source_chars: characters of each source shown to the generator.
        attribute_uncited: when the model cites nothing, attribute sentences to sources by word
            overlap; such citations are labelled ``source="attributed"``.
        demonstrations: a :class:`~rag.demonstrations.DemonstrationSelector`; its top-k solved
            examples for the question go before it as few-shot user/assistant turns.
        context: a :class:`~rag.ingest.context.ChunkContext`: merges and expands chunk hits, fits
            them to the generator's window and checks each citation against its span.
    """

    name: ClassVar[str] = "pipeline"
    kind: ClassVar[str] = "pipeline"

    def __init__(
        self,
        retriever: Any,
        rerankers: list[Any] | None = None,
        compressors: list[Any] | None = None,
        generator: Any = None,
        k: int = 5,
        candidates: int | None = None,
        max_source_chars: int = 1000,
        attribute_uncited: bool = True,
        demonstrations: Any = None,
        context: Any = None,
    ) -> None:
        check_k(k)
        if candidates is not None:
            check_k(candidates)
        self.retriever = retriever
        self.rerankers = list(rerankers or [])
        self.compressors = list(compressors or [])
        self.generator = generator
        self.k = k
        self.candidates = candidates
        self.max_source_chars = max_source_chars
        self.attribute_uncited = attribute_uncited
        self.demonstrations = demonstrations
        self.context = context

    def _load(self) -> None:
        for n in [self.retriever, *self.rerankers, *self.compressors]:
            n.load()

    def index(self, documents: Sequence[Document | dict[str, Any]]) -> Pipeline:
        self.retriever.index(documents)
        return self

    def save(self, path: str | Path) -> Path:
        """Save the index (retriever state) and this pipeline's config as ``pipeline.json``."""
        import json

        from rag.persist import atomic_write_text

        p = Path(path)
        self.retriever.save(p)
        atomic_write_text(p / "pipeline.json", json.dumps(self.to_config(), indent=2))
        return p

    @classmethod
    def open(cls, path: str | Path) -> Pipeline:
        """Open a saved index: the pipeline config if present, the saved retriever state."""
        from rag.persist import load_retriever

        p = Path(path)
        retriever = load_retriever(p)
        if (p / "pipeline.json").exists():
            pipe = Node.from_config(p / "pipeline.json")
            if not isinstance(pipe, Pipeline):
                raise ConfigError(f"{p / 'pipeline.json'} does not describe a pipeline")
            pipe.retriever = retriever
            return pipe
        return cls(retriever=retriever)

    def _warn_instruction(self, q: Query) -> None:
        if not q.instruction:
            return
        stages = [self.retriever, *self.rerankers, *self.compressors]
        ignored = [type(n).__name__ for n in stages if not getattr(n, "uses_instruction", False)]
        if len(ignored) == len(stages):
            warnings.warn(
                f"query {q.id!r} has an instruction but no stage uses it ({', '.join(ignored)})",
                stacklevel=3,
            )

    def run_stages(
        self, queries: Sequence[Query | str], k: int | None = None
    ) -> dict[str, list[Ranking]]:
        """Rankings after each stage: ``retrieve``, ``rerank:i:name``, ``compress:i:name``."""
        self.load()
        k = check_k(k) if k is not None else self.k
        qs = [check_query(q) for q in queries]
        for q in qs:
            self._warn_instruction(q)
        depth = (
            self.candidates
            if self.candidates is not None
            else (max(k, 50) if self.rerankers else k)
        )
        out: dict[str, list[Ranking]] = {}
        rankings = self.retriever.retrieve_batch(qs, k=depth)
        out["retrieve"] = rankings
        for i, rr in enumerate(self.rerankers):
            last = i == len(self.rerankers) - 1
            rankings = rr.rerank_batch(rankings, k=k if last else None)
            out[f"rerank:{i}:{rr.name}"] = rankings
        if not self.rerankers:
            rankings = [r.top(k) for r in rankings]
        for i, c in enumerate(self.compressors):
            rankings = [c.compress(r) for r in rankings]
            out[f"compress:{i}:{c.name}"] = rankings
        return out

    def search_batch(self, queries: Sequence[Query | str], k: int | None = None) -> list[Ranking]:
        return list(self.run_stages(queries, k).values())[-1]

    def search(self, query: Query | str, k: int | None = None) -> Ranking:
        return self.search_batch([query], k)[0]

    def _user_turn(self, question: str, hits: Sequence[Hit]) -> str:
        return prompts.render(
            "answer_user", question=question, sources=format_sources(hits, self.max_source_chars)
        )

    def _messages(self, q: Query, hits: Sequence[Hit]) -> list[dict[str, str]]:
        question = q.text if not q.instruction else f"{q.text}\n({q.instruction})"
        shots: list[dict[str, str]] = []
        if self.demonstrations is not None:
            demos = self.demonstrations.select(q)
            shots = demo_turns(demos, lambda d: self._user_turn(d.input, context_hits(d)))
        return [
            {"role": "system", "content": prompts.load("answer_system")},
            *shots,
            {"role": "user", "content": self._user_turn(question, hits)},
        ]

    def ask_stream(self, query: Query | str) -> Iterator[str | Answer]:
        """Yield answer text pieces as generated, then the final :class:`Answer`."""
        if self.generator is None:
            raise ConfigError("this pipeline has no generator; set generator= to answer questions")
        q = check_query(query)
        t0 = time.perf_counter()
        hits = self.search(q).hits
        if self.context is not None:
            hits = self.context.build(self, q, hits)
        timings = {"retrieve_s": time.perf_counter() - t0}
        for item in self.stream_answer(q, hits, self._messages(q, hits), timings=timings):
            if self.context is not None and isinstance(item, Answer):
                item = self.context.check(item)
            yield item

    def stream_answer(
        self,
        q: Query,
        hits: Sequence[Hit],
        messages: list[dict[str, str]],
        generator: Any = None,
        timings: dict[str, float] | None = None,
        trace: Sequence[TraceStep] | None = None,
        max_new_tokens: int | None = None,
    ) -> Iterator[str | Answer]:
        """Generate over ``messages`` (text pieces, then the :class:`Answer`); markers resolve
        against ``hits`` only, so an answer can cite nothing that was not given. With ``trace``,
        the answer step is appended to it on the Answer."""
        gen = generator if generator is not None else self.generator
        t0 = time.perf_counter()
        # the answer prompt asks for one sentence: an answer ends where the model starts a new
        # paragraph or echoes the next numbered source
        stops = [*getattr(gen, "stop", []), *ANSWER_STOPS]
        kw = {"max_new_tokens": max_new_tokens} if max_new_tokens is not None else {}
        pieces = []
        for piece in gen.stream(messages, stop=stops, **kw):
            pieces.append(piece)
            yield piece
        text = "".join(pieces).strip()
        cites, bad = resolve(text, hits)
        if not cites and self.attribute_uncited:
            cites = attribute(text, hits)
        steps = () if trace is None else (
            *trace, TraceStep(action="answer", document_ids=tuple(c.document_id for c in cites))
        )
        yield Answer(
            query=q,
            text=text,
            citations=tuple(cites),
            invalid_markers=tuple(bad),
            contexts=tuple(hits),
            timings={**(timings or {}), "generate_s": time.perf_counter() - t0},
            model=f"{getattr(gen, 'model', '')}|prompt={prompts.version('answer_user')}",
            trace=steps,
        )

    def ask(self, query: Query | str) -> Answer:
        *_, answer = self.ask_stream(query)
        if not isinstance(answer, Answer):  # the generator yielded nothing at all
            raise ConfigError("generator produced no output")
        return answer
