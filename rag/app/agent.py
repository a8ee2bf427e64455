"""Agentic retrieval: the generator drives search through tools in a bounded loop; multi-hop.

:class:`Agent` is a ReAct-style loop (Yao et al., ICLR 2023): at each step the model either calls a
tool (``search`` with an optional instruction and metadata filters, ``fetch`` a document by id) or
answers. Every source a tool returns gets the next number; the final answer's markers resolve
against those sources only, so an answer can cite nothing that was not retrieved. The loop is
bounded by ``max_steps`` model calls and ``max_tokens`` generated tokens; a bad reply (no JSON, an
unknown tool, a missing argument, a bad filter) is reported back to the model as the next message
and costs a step, never an exception. When the budget runs out, the answer is written from the
sources seen so far with the ordinary answer prompt.

Generators with native tool calling (OpenAI-compatible servers, vLLM) declare
``supports_tools = True`` and accept ``generate(messages, tools=[...], max_new_tokens=n)``,
returning either text or an OpenAI-style message ``{"content": ..., "tool_calls": [...]}`` (a
dict or an object with those attributes). Other generators (transformers) get the JSON prompts.

:class:`MultiHop` is iterative retrieve-and-reason for questions that need two documents
(IRCoT: Trivedi et al., ACL 2023; self-ask: Press et al., Findings of EMNLP 2023): retrieve, ask
the model what is still missing as a new query, retrieve again, then answer over everything seen.
Both keep the queries issued and the documents seen on ``Answer.trace``.

>>> Agent(pipeline, max_steps=4).run("Which moon of the ringed planet has lakes?")  # doctest: +SKIP
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import Any

import prompts
from rag.app.chat import Turn, answer_stream, approx_tokens, clean_rewrite, final, history_messages
from rag.app.toolcalls import FETCH, SEARCH, FinalAnswer, Tool, ToolCall, ToolCallError, parse_reply
from rag.core.errors import ConfigError, RagError
from rag.core.nodes import Generator
from rag.core.types import Answer, Hit, Query, TraceStep
from rag.pipeline import Pipeline, format_sources
from rag.pipeline.citations import attribute, resolve
from rag.pipeline.parents import lookup


def _check_positive(**values: int) -> None:
    for name, v in values.items():
        if v < 1:
            raise ConfigError(f"{name} must be >= 1, got {v}")


def example_messages() -> list[dict[str, str]]:
    """The worked exchange of ``agent_example.txt`` as chat messages."""
    out: list[dict[str, str]] = []
    for line in prompts.load("agent_example").splitlines():
        if line in ("[user]", "[assistant]"):
            out.append({"role": line[1:-1], "content": ""})
        elif out:
            out[-1]["content"] += ("\n" if out[-1]["content"] else "") + line
    return out


def _model_tag(generator: Any) -> str:
    return str(getattr(generator, "model", ""))


class _Sources:
    """Every source the tools returned, numbered in order of first appearance."""

    def __init__(self) -> None:
        self.hits: list[Hit] = []
        self._num: dict[str, int] = {}

    def add(self, hits: Sequence[Hit]) -> list[tuple[int, Hit]]:
        out = []
        for h in hits:
            if h.id not in self._num:
                self.hits.append(h)
                self._num[h.id] = len(self.hits)
            out.append((self._num[h.id], h))
        return out


def _native_reply(raw: Any) -> tuple[str, list[dict[str, Any]]]:
    """(content, tool_calls) from a native generator's str, dict or object reply."""
    if isinstance(raw, str):
        return raw, []
    get = raw.get if isinstance(raw, dict) else (lambda k, d=None: getattr(raw, k, d))
    calls = get("tool_calls") or []
    norm = [c if isinstance(c, dict) else {"id": c.id, "function": vars(c.function)} for c in calls]
    return get("content") or "", norm


class Agent:
    """A bounded tool-calling loop over a pipeline.

    Args:
        pipeline: searched by the ``search`` tool (its retriever also serves ``fetch``).
        generator: defaults to ``pipeline.generator``.
        max_steps: model calls at most (tool calls, bad replies and the answer all count).
        max_tokens: generated tokens at most over the whole loop.
        step_tokens: generated tokens at most per step.
        k: sources per search.
        max_source_chars: characters of each source shown to the model.
        example: open the prompt-format conversation with the worked exchange of
            ``agent_example.txt`` (SmolLM2-135M wrote no JSON at all without it, and valid
            tool calls with it). Native tool calling never gets it.
    """

    def __init__(
        self,
        pipeline: Pipeline,
        generator: Generator | None = None,
        max_steps: int = 4,
        max_tokens: int = 512,
        step_tokens: int = 96,
        k: int = 3,
        max_source_chars: int = 400,
        example: bool = True,
    ) -> None:
        _check_positive(max_steps=max_steps, max_tokens=max_tokens, step_tokens=step_tokens, k=k)
        self.pipeline = pipeline
        gen = generator if generator is not None else pipeline.generator
        if gen is None:
            raise ConfigError(
                "an agent needs a generator: pass generator= or set pipeline.generator"
            )
        self.generator: Generator = gen
        self.max_steps, self.max_tokens, self.step_tokens = max_steps, max_tokens, step_tokens
        self.k, self.max_source_chars, self.example = k, max_source_chars, example
        self.tools: dict[str, Tool] = {t.name: t for t in (SEARCH, FETCH)}

    @property
    def native(self) -> bool:
        return bool(getattr(self.generator, "supports_tools", False))

    # -- tools ----------------------------------------------------------------------------------
    def _search(self, args: dict[str, Any]) -> tuple[Query, list[Hit]]:
        """The ``search`` tool: one request through the pipeline (retriever with the filter,
        rerankers over its candidates, compressors), as every other caller makes it."""
        q = Query(text=args["query"], instruction=args.get("instruction"))
        flt = args.get("filters") or None
        return q, list(self.pipeline.search(q, k=self.k, filter=flt).hits)

    def _fetch(self, args: dict[str, Any]) -> list[Hit]:
        doc = lookup(self.pipeline.retriever.documents, str(args["id"]))
        if doc is None:
            raise ToolCallError(f"no document has id {args['id']!r}; use an id a search returned")
        return [Hit(document=doc, score=0.0)]

    def run_tool(self, call: ToolCall, sources: _Sources) -> tuple[str, TraceStep]:
        """Run one call; return (the message for the model, the trace step)."""
        if call.name == "search":
            q, hits = self._search(call.args)
            step = TraceStep(action="search", query=q.text, document_ids=tuple(h.id for h in hits))
        else:
            hits = self._fetch(call.args)
            step = TraceStep(action="fetch", query=str(call.args["id"]), document_ids=(hits[0].id,))
        numbered = sources.add(hits)
        listing = "\n".join(
            prompts.render(
                "answer_source",
                n=n,
                title=f"(id {h.id}) {h.document.title}: ",
                text=h.document.text[: self.max_source_chars],
            )
            for n, h in numbered
        )
        return prompts.render("agent_results", tool=call.name, sources=listing or "nothing"), step

    # -- loop -----------------------------------------------------------------------------------
    def _messages(self, question: str, history: Sequence[Turn]) -> list[dict[str, Any]]:
        tools = "\n".join(t.line() for t in self.tools.values())
        system = prompts.render("agent_system", tools=tools, max_steps=self.max_steps)
        return [
            {"role": "system", "content": system},
            *(example_messages() if self.example and not self.native else []),
            *history_messages(history),
            {"role": "user", "content": f"Question: {question}"},
        ]

    def _call(self, messages: list[dict[str, Any]], budget: int) -> tuple[str, list[Any]]:
        """One model step: (reply text, actions or a ToolCallError per native call)."""
        if self.native:
            schemas = [t.schema() for t in self.tools.values()]
            tool_generator: Any = self.generator  # supports_tools: generate takes tools=
            text, calls = _native_reply(
                tool_generator.generate(messages, tools=schemas, max_new_tokens=budget)
            )
            if not calls:
                return text, [FinalAnswer(text.strip())]
            return text, [self._parse_native(c) for c in calls]
        text = self.generator.generate(messages, max_new_tokens=budget)
        try:
            return text, [parse_reply(text, self.tools)]
        except ToolCallError as e:
            return text, [e]

    def _parse_native(self, call: dict[str, Any]) -> ToolCall | FinalAnswer | ToolCallError:
        from rag.app.toolcalls import to_action

        try:
            return to_action(call, self.tools)
        except ToolCallError as e:
            return e

    def run(self, question: str, history: Sequence[Turn] = ()) -> Answer:
        """Answer ``question`` (a standalone question) with tool calls; the trace is kept."""
        t0 = time.perf_counter()
        messages = self._messages(question, history)
        sources, trace, used = _Sources(), [], 0
        for _ in range(self.max_steps):
            budget = min(self.step_tokens, self.max_tokens - used)
            if budget < 1:
                trace.append(TraceStep(action="budget", detail=f"{self.max_tokens} tokens spent"))
                break
            text, actions = self._call(messages, budget)
            used += approx_tokens(text)
            for a in actions:
                if isinstance(a, FinalAnswer):
                    if not a.text:
                        a = ToolCallError("the answer is empty")
                    else:
                        return self._finish(question, a.text, sources, trace, t0)
                reply = self._step(a, sources, trace, text)
                messages += self._turn(text, a, reply)
        else:
            trace.append(TraceStep(action="budget", detail=f"{self.max_steps} steps taken"))
        return self._fallback(question, sources, trace, history, t0)

    def _step(
        self, a: ToolCall | ToolCallError, sources: _Sources, trace: list[TraceStep], text: str
    ) -> str:
        if isinstance(a, ToolCall):
            try:
                reply, step = self.run_tool(a, sources)
                trace.append(step)
                return reply
            except RagError as e:  # a bad filter, an unknown id: the model hears about it
                a = e if isinstance(e, ToolCallError) else ToolCallError(f"{a.name} failed: {e}")
        trace.append(TraceStep(action="error", detail=f"{a} (reply: {text[:100]!r})"))
        return prompts.render("agent_error", error=str(a))

    def _turn(self, text: str, a: Any, reply: str) -> list[dict[str, Any]]:
        if self.native and isinstance(a, ToolCall):
            call = {
                "id": a.id,
                "type": "function",
                "function": {"name": a.name, "arguments": json.dumps(a.args)},
            }
            return [
                {"role": "assistant", "content": text, "tool_calls": [call]},
                {"role": "tool", "tool_call_id": a.id, "content": reply},
            ]
        return [{"role": "assistant", "content": text}, {"role": "user", "content": reply}]

    def _finish(
        self, question: str, text: str, sources: _Sources, trace: list[TraceStep], t0: float
    ) -> Answer:
        cites, bad = resolve(text, sources.hits)
        if not cites and getattr(self.pipeline, "attribute_uncited", False):
            cites = attribute(text, sources.hits)  # labelled source="attributed"
        trace.append(TraceStep(action="answer", document_ids=tuple(c.document_id for c in cites)))
        return Answer(
            query=Query(text=question),
            text=text,
            citations=tuple(cites),
            invalid_markers=tuple(bad),
            contexts=tuple(sources.hits),
            timings={"agent_s": time.perf_counter() - t0},
            model=_model_tag(self.generator) + "|prompt=" + prompts.version("agent_system"),
            trace=tuple(trace),
        )

    def _fallback(
        self, question: str, sources: _Sources, trace: list[TraceStep], history: Any, t0: float
    ) -> Answer:
        """Out of budget: answer with the ordinary prompt over the sources seen (or, if none,
        over a search with the question itself)."""
        q = Query(text=question)
        hits = sources.hits[: max(self.k, self.pipeline.k)]
        if not hits:
            hits = list(self.pipeline.search(q, k=self.k).hits)
            trace.append(
                TraceStep(action="search", query=q.text, document_ids=tuple(h.id for h in hits))
            )
        timings = {"agent_s": time.perf_counter() - t0}
        return final(answer_stream(self.pipeline, self.generator, q, hits, history, trace, timings))


class MultiHop:
    """Iterative retrieve-and-reason: up to ``max_hops`` searches, each next query written by the
    model from what is missing (``multihop_next.txt``); stops early on ``DONE`` or a repeated
    query; then answers over every source seen (at most ``max_contexts``).

    Args:
        pipeline: searched at each hop (``k`` hits per hop).
        generator: defaults to ``pipeline.generator``.
        query_tokens: generated tokens at most for each next query.
    """

    def __init__(
        self,
        pipeline: Pipeline,
        generator: Generator | None = None,
        max_hops: int = 2,
        k: int = 2,
        max_contexts: int = 4,
        query_tokens: int = 32,
    ) -> None:
        _check_positive(
            max_hops=max_hops, k=k, max_contexts=max_contexts, query_tokens=query_tokens
        )
        self.pipeline = pipeline
        gen = generator if generator is not None else pipeline.generator
        if gen is None:
            raise ConfigError(
                "multi-hop needs a generator: pass generator= or set pipeline.generator"
            )
        self.generator: Generator = gen
        self.max_hops, self.k, self.max_contexts, self.query_tokens = (
            max_hops,
            k,
            max_contexts,
            query_tokens,
        )

    def next_query(self, question: str, seen: Sequence[Hit]) -> str:
        prompt = prompts.render(
            "multihop_next", question=question, sources=format_sources(seen, 300)
        )
        out = self.generator.generate(
            [{"role": "user", "content": prompt}], max_new_tokens=self.query_tokens
        )
        return clean_rewrite(out)

    def run(self, question: str, history: Sequence[Turn] = ()) -> Answer:
        t0 = time.perf_counter()
        sources, trace, issued = _Sources(), [], [question]
        for hop in range(self.max_hops):
            hits = self.pipeline.search(Query(text=issued[-1]), k=self.k).hits
            sources.add(hits)
            trace.append(
                TraceStep(action="search", query=issued[-1], document_ids=tuple(h.id for h in hits))
            )
            if hop == self.max_hops - 1:
                break
            nxt = self.next_query(question, sources.hits)
            norm = {" ".join(q.lower().split()) for q in issued}
            if not nxt or nxt.upper().startswith("DONE") or " ".join(nxt.lower().split()) in norm:
                trace.append(TraceStep(action="stop", query=nxt, detail="done or repeated query"))
                break
            issued.append(nxt)
        contexts = sources.hits[: self.max_contexts]
        timings = {"retrieve_s": time.perf_counter() - t0}
        q = Query(text=question)
        return final(
            answer_stream(self.pipeline, self.generator, q, contexts, history, trace, timings)
        )
