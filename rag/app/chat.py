"""Conversations over a pipeline: typed, serialisable state, a token budget, follow-up handling.

A follow-up ("how many moons does it have?") cannot be retrieved with as it stands. The engine
turns it into the query it retrieves with, by one of four modes, and records that query on the
turn and on the answer's ``trace``:

* ``condense``: the generator rewrites the follow-up with the history into a standalone question
  (``prompts/templates/condense_*.txt``), as LlamaIndex's condense-question chat engine and
  LangChain's ``create_history_aware_retriever`` do;
* ``concat``: the user's earlier questions (within the budget) and the follow-up, joined;
* ``fusion``: retrieve with the follow-up alone and with ``concat``, fuse with reciprocal rank
  fusion (Cormack, Clarke & Buettcher, SIGIR 2009): history-aware fusion without a model call;
* ``none``: the follow-up alone (single shot).

The answer is generated from the retrieved sources with the trimmed history before the question
(LlamaIndex's condense-plus-context engine): a token budget drops the oldest turns first and never
the current question.

>>> engine = ChatEngine(pipeline, mode="condense")               # doctest: +SKIP
>>> engine.ask("Which planet has the Great Red Spot?").text      # doctest: +SKIP
>>> engine.ask("How many moons does it have?").trace[0].query    # doctest: +SKIP
'How many moons does Jupiter have?'
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

import prompts
from rag.core.errors import NO_OUTPUT, ConfigError, DataError, GenerationError
from rag.core.tokens import TokenCounter, approx_tokens, token_counter
from rag.core.types import Answer, Citation, Document, Hit, Query, TraceStep

if TYPE_CHECKING:
    from rag.core.nodes import Generator
    from rag.pipeline import Pipeline

MODES = ("condense", "concat", "fusion", "none")
Messages = list[dict[str, str]]


class Turn(BaseModel):
    """One exchange: the user's question, the query retrieved with, the answer and its sources.

    ``sources`` are the contexts the answer was given, in marker order (``[1]`` is
    ``sources[0]``); ``citations`` resolve markers to their ids."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    question: str
    answer: str
    query: str
    citations: tuple[Citation, ...] = ()
    sources: tuple[Document, ...] = ()

    @property
    def cited(self) -> list[Document]:
        by_id = {d.id: d for d in self.sources}
        ids = dict.fromkeys(c.document_id for c in self.citations)
        return [by_id[i] for i in ids if i in by_id]


class Conversation(BaseModel):
    """An immutable conversation; :meth:`add` returns a new one. Serialises to JSON."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    id: str = Field(default_factory=lambda: uuid.uuid4().hex[:12])
    turns: tuple[Turn, ...] = ()

    def add(self, turn: Turn) -> Conversation:
        return self.model_copy(update={"turns": (*self.turns, turn)})

    def save(self, path: str | Path) -> Path:
        from rag.index.persist import atomic_write_text

        atomic_write_text(Path(path), self.model_dump_json(indent=1))
        return Path(path)

    @classmethod
    def load(cls, path: str | Path) -> Conversation:
        from pydantic import ValidationError

        try:
            return cls.model_validate_json(Path(path).read_text(encoding="utf-8"))
        except ValidationError as e:
            raise DataError(f"{path}: not a saved conversation ({e.error_count()} errors)") from e


def fit_history(
    turns: Sequence[Turn], question: str, max_tokens: int, count: TokenCounter = approx_tokens
) -> list[Turn]:
    """The newest turns that fit in ``max_tokens`` together with ``question``, oldest first.

    The question itself is never trimmed: when it alone exceeds the budget, no history is kept.
    A turn costs its question plus its answer; a turn that does not fit ends the history (turns
    are never skipped, so the kept history is contiguous)."""
    if max_tokens < 0:
        raise ConfigError(f"max_tokens must be >= 0, got {max_tokens}")
    budget = max_tokens - count(question)
    kept: list[Turn] = []
    for t in reversed(turns):
        cost = count(t.question) + count(t.answer)
        if cost > budget:
            break
        kept.append(t)
        budget -= cost
    return kept[::-1]


def history_messages(turns: Sequence[Turn]) -> Messages:
    out: Messages = []
    for t in turns:
        out += [{"role": "user", "content": t.question}, {"role": "assistant", "content": t.answer}]
    return out


def concat_query(turns: Sequence[Turn], question: str) -> str:
    """The user's earlier questions and the follow-up, oldest first, joined by spaces."""
    return " ".join([*(t.question for t in turns), question])


_PREFIX = re.compile(r"^\s*(standalone question|rewritten question|question)\s*:\s*", re.I)


def clean_rewrite(text: str) -> str:
    """First non-empty line of a model's rewrite, without a leading label or wrapping quotes."""
    line = next((ln for ln in text.strip().splitlines() if ln.strip()), "")
    return _PREFIX.sub("", line).strip().strip("\"'`").strip()


def condense_messages(turns: Sequence[Turn], question: str) -> Messages:
    """A few-shot chat prompt: the worked examples of ``condense_examples.txt`` as earlier
    exchanges, then the user's earlier questions and the follow-up. Earlier *answers* are left
    out: SmolLM2-135M resolved fewer pronouns when they were shown (long echoes distract it)."""
    msgs: Messages = [{"role": "system", "content": prompts.load("condense_system")}]
    for block in prompts.load("condense_examples").split("\n\n"):
        fields = dict(ln.split(": ", 1) for ln in block.strip().splitlines())
        user = prompts.render(
            "condense_user", history=fields["Earlier"], question=fields["Follow-up"]
        )
        msgs += [
            {"role": "user", "content": user},
            {"role": "assistant", "content": fields["Standalone"]},
        ]
    history = " ".join(t.question for t in turns)
    msgs.append(
        {
            "role": "user",
            "content": prompts.render("condense_user", history=history, question=question),
        }
    )
    return msgs


def condense_question(
    generator: Any, turns: Sequence[Turn], question: str, max_new_tokens: int = 48
) -> str:
    """Rewrite ``question`` with the history into a standalone question (empty if the model
    wrote nothing usable). Without history the question is returned unchanged, with no call."""
    if not turns:
        return question
    out = generator.generate(condense_messages(turns, question), max_new_tokens=max_new_tokens)
    return clean_rewrite(out)


def answer_messages(
    pipeline: Any, q: Query, hits: Sequence[Hit], history: Sequence[Turn] = ()
) -> Messages:
    """The pipeline's answer prompt with the history between the system and the user message."""
    system, user = pipeline._messages(q, hits)
    return [system, *history_messages(history), user]


def answer_stream(
    pipeline: Any,
    generator: Any,
    q: Query,
    hits: Sequence[Hit],
    history: Sequence[Turn] = (),
    trace: Sequence[TraceStep] = (),
    timings: dict[str, float] | None = None,
    max_new_tokens: int | None = None,
) -> Iterator[str | Answer]:
    """Stream an answer over ``hits`` with the chat history (text pieces, then the
    :class:`Answer`, its trace ending in the answer step); see :meth:`Pipeline.stream_answer`."""
    messages = answer_messages(pipeline, q, hits, history)
    yield from pipeline.stream_answer(
        q, hits, messages, generator, timings, tuple(trace), max_new_tokens
    )


def final(stream: Iterator[str | Answer]) -> Answer:
    """Drain a stream and return its :class:`Answer`."""
    *_, last = stream
    if not isinstance(last, Answer):
        raise GenerationError(NO_OUTPUT)
    return last


class ChatEngine:
    """A multi-turn chat over a :class:`~rag.pipeline.Pipeline`.

    Args:
        pipeline: retrieves (its ``k`` contexts per turn) and formats the answer prompt.
        generator: answers and condenses; defaults to ``pipeline.generator``.
        mode: how a follow-up becomes the retrieval query: ``condense`` | ``concat`` |
            ``fusion`` | ``none`` (see the module docstring).
        history_tokens: budget for the kept history plus the current question (oldest turns go
            first; the question is never cut).
        conversation: a conversation to continue (e.g. :meth:`Conversation.load`).
        condense_turns: the most recent turns shown to the rewrite (``condense``/``concat``/
            ``fusion``); a follow-up mostly refers to the last exchange, and older questions
            pulled SmolLM2-135M towards earlier topics.
        agent: an :class:`~rag.app.agent.Agent` or :class:`~rag.app.agent.MultiHop`; when set, it
            answers the standalone question (its own trace follows the condense step).
    """

    def __init__(
        self,
        pipeline: Pipeline,
        generator: Generator | None = None,
        mode: str = "condense",
        history_tokens: int = 768,
        conversation: Conversation | None = None,
        condense_tokens: int = 48,
        condense_turns: int = 2,
        agent: Any = None,
    ) -> None:
        if mode not in MODES:
            raise ConfigError(f"mode must be one of {MODES}, got {mode!r}")
        if history_tokens < 0:
            raise ConfigError(f"history_tokens must be >= 0, got {history_tokens}")
        self.pipeline = pipeline
        self.generator = generator if generator is not None else pipeline.generator
        if self.generator is None:
            raise ConfigError("a chat needs a generator: pass generator= or set pipeline.generator")
        self.mode = mode
        self.history_tokens = history_tokens
        self.conversation = conversation if conversation is not None else Conversation()
        self.condense_tokens = condense_tokens
        if condense_turns < 1:
            raise ConfigError(f"condense_turns must be >= 1, got {condense_turns}")
        self.condense_turns = condense_turns
        self.agent = agent
        self._count: TokenCounter | None = None

    def history(self, question: str) -> list[Turn]:
        """The turns kept for ``question`` under the token budget."""
        if self._count is None:
            self._count = token_counter(self.generator)
        return fit_history(self.conversation.turns, question, self.history_tokens, self._count)

    def standalone(self, question: str, history: Sequence[Turn]) -> tuple[str, TraceStep]:
        """The query to retrieve with for ``question`` under this engine's mode."""
        if not history or self.mode == "none":
            return question, TraceStep(action="condense", query=question, detail="as asked")
        history = history[-self.condense_turns :]
        if self.mode == "condense":
            q = condense_question(self.generator, history, question, self.condense_tokens)
            if q:
                return q, TraceStep(action="condense", query=q, detail="rewritten by the model")
            return question, TraceStep(
                action="condense", query=question, detail="empty rewrite; used the follow-up"
            )
        q = concat_query(history, question)
        return q, TraceStep(action="condense", query=q, detail=f"{self.mode} with the history")

    def _search(self, question: str, q: Query, history: Sequence[Turn]) -> tuple[Hit, ...]:
        if self.mode == "fusion" and history:
            from retrievers.fusion import rrf

            rankings = self.pipeline.search_batch([Query(text=question), q])
            return rrf(rankings).top(self.pipeline.k).hits
        return self.pipeline.search(q).hits

    def stream(self, question: str) -> Iterator[str | Answer]:
        """Yield answer pieces, then the :class:`Answer`; the turn is added to the conversation."""
        if not question or not question.strip():
            raise ConfigError("the question is empty; type a question")
        t0 = time.perf_counter()
        history = self.history(question)
        text, step = self.standalone(question, history)
        q = Query(text=text)
        timings = {"condense_s": time.perf_counter() - t0}
        answer: Answer | None = None
        for item in self._answer(question, q, history, step, timings):
            if isinstance(item, Answer):
                answer = item
            yield item
        if answer is not None:
            self.conversation = self.conversation.add(
                Turn(
                    question=question,
                    answer=answer.text,
                    query=q.text,
                    citations=answer.citations,
                    sources=tuple(h.document for h in answer.contexts),
                )
            )

    def _answer(
        self,
        question: str,
        q: Query,
        history: Sequence[Turn],
        step: TraceStep,
        timings: dict[str, float],
    ) -> Iterator[str | Answer]:
        if self.agent is not None:  # the agent searches by itself, from the standalone question
            a = self.agent.run(q.text, history)
            yield a.text
            yield a.model_copy(update={"trace": (step, *a.trace)})
            return
        t1 = time.perf_counter()
        hits = tuple(self.pipeline.sources(q, self._search(question, q, history)))
        found = TraceStep(action="search", query=q.text, document_ids=tuple(h.id for h in hits))
        timings = {**timings, "retrieve_s": time.perf_counter() - t1}
        yield from answer_stream(
            self.pipeline, self.generator, q, hits, history, [step, found], timings
        )

    def ask(self, question: str) -> Answer:
        return final(self.stream(question))

    def reset(self) -> None:
        self.conversation = Conversation()
