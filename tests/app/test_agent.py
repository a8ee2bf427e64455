"""The tool-call parser and the agent / multi-hop loops, driven by scripted generators: the loop
is under test (parsing, step and token limits, error feedback, citations), not a model."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scripted_generators import NativeScripted, Scripted

from rag.app.agent import Agent, MultiHop, example_messages
from rag.app.toolcalls import FETCH, SEARCH, FinalAnswer, ToolCall, ToolCallError, parse_reply
from rag.core.errors import ConfigError
from rag.pipeline import Pipeline

TOOLS = {"search": SEARCH, "fetch": FETCH}


@pytest.fixture()
def pipe(demo_docs):
    from retrievers import BM25Retriever

    return Pipeline(retriever=BM25Retriever(), k=3).index(demo_docs)


def search(q: str, **extra) -> str:
    return json.dumps({"tool": "search", "args": {"query": q, **extra}})


@pytest.mark.parametrize(
    "text, expected",
    [
        ('{"tool": "search", "args": {"query": "rings"}}', ToolCall("search", {"query": "rings"})),
        (
            'I will search.\n```json\n{"tool": "search", "args": {"query": "a {b}"}}\n```',
            ToolCall("search", {"query": "a {b}"}),
        ),
        ("{'tool': 'fetch', 'args': {'id': 'titan'}}", ToolCall("fetch", {"id": "titan"})),
        ('{"tool": "fetch", "args": {"id": "titan",},}', ToolCall("fetch", {"id": "titan"})),
        (
            '{"name": "search", "arguments": "{\\"query\\": \\"moons\\", \\"junk\\": 1}"}',
            ToolCall("search", {"query": "moons"}),
        ),
        (
            '{"id": "c1", "function": {"name": "fetch", "arguments": "{\\"id\\": \\"sun\\"}"}}',
            ToolCall("fetch", {"id": "sun"}, "c1"),
        ),
        ('{"answer": " Titan [2]. "}', FinalAnswer("Titan [2].")),
        ('{"tool": "answer", "args": {"text": "Titan [2]."}}', FinalAnswer("Titan [2].")),
        ('x {bad json} then {"answer": "ok [1]"}', FinalAnswer("ok [1]")),
        (
            '{"answer": "Titan, cut off by the token lim',
            FinalAnswer("Titan, cut off by the token lim"),
        ),
        ('{"tool": "search", "args": {"query": "rings"', ToolCall("search", {"query": "rings"})),
    ],
)
def test_parser_accepts_what_small_models_write(text, expected):
    assert parse_reply(text, TOOLS) == expected


@pytest.mark.parametrize(
    "text, message",
    [
        ("Saturn has rings.", "no JSON object"),
        ('{"tool": "search", "args": {"query": }', "not valid JSON"),
        ("{not: json at all}", "not valid JSON"),
        ('{"tool": "browse", "args": {}}', "unknown tool 'browse'; the tools are: fetch, search"),
        ('{"tool": "search", "args": {}}', "search needs 'query'"),
        ('{"tool": "search", "args": {"query": 3}}', "'query' must be a string"),
        ('{"tool": "search", "args": "rings"}', '"args" must be a JSON object'),
        ('{"query": "rings"}', 'no "tool" and no "answer"'),
        ('{"tool": ["search"]}', '"tool" must be a tool name'),
        ('{"tool": "answer", "args": {"text": ""}}', "the answer is empty"),
    ],
)
def test_parser_explains_bad_calls(text, message):
    with pytest.raises(ToolCallError, match=message.replace("(", r"\(")):
        parse_reply(text, TOOLS)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from("{}[]\"':,\\ abtoolqueryanswer0123"), max_size=80))
def test_parser_never_crashes(text):
    try:
        out = parse_reply(text, TOOLS)
    except ToolCallError:
        return
    assert isinstance(out, (ToolCall, FinalAnswer))


def test_agent_searches_then_cites_what_it_retrieved(pipe):
    gen = Scripted([search("largest moon of Saturn"), '{"answer": "Titan is the largest [1]."}'])
    a = Agent(pipe, gen, k=2).run("What is Saturn's largest moon?")
    assert a.text == "Titan is the largest [1]."
    assert [s.action for s in a.trace] == ["search", "answer"]
    assert a.trace[0].query == "largest moon of Saturn"
    retrieved = pipe.search("largest moon of Saturn", k=2).ids
    assert list(a.trace[0].document_ids) == retrieved == [h.id for h in a.contexts]
    assert a.cited_ids == [retrieved[0]]
    # the prompt format opens with the worked example; then the numbered results with ids
    assert gen.calls[0]["messages"][1:5] == example_messages()
    assert gen.calls[0]["messages"][5] == {
        "role": "user",
        "content": "Question: What is Saturn's largest moon?",
    }
    assert gen.calls[1]["messages"][-2] == {"role": "assistant", "content": gen.replies[0]}
    assert f"[1] (id {retrieved[0]})" in gen.calls[1]["messages"][-1]["content"]


def test_bad_calls_are_reported_back_and_the_loop_recovers(pipe):
    gen = Scripted(
        [
            "I think the answer is Titan.",
            '{"tool": "browse", "args": {"url": "x"}}',
            search("moons", filters={"topic": {"between": 1}}),
            '{"tool": "fetch", "args": {"id": "no-such-doc"}}',
            '{"tool": "fetch", "args": {"id": "titan"}}',
            '{"answer": "Titan [1]."}',
        ]
    )
    a = Agent(pipe, gen, max_steps=6).run("What is Saturn's largest moon?")
    assert [s.action for s in a.trace] == ["error"] * 4 + ["fetch", "answer"]
    feedback = [c["messages"][-1]["content"] for c in gen.calls[1:5]]
    assert "no JSON object" in feedback[0]
    assert "unknown tool 'browse'" in feedback[1]
    assert "search failed" in feedback[2] and "between" in feedback[2]
    assert "no document has id 'no-such-doc'" in feedback[3]
    assert a.cited_ids == ["titan"] and a.contexts[0].id == "titan"


def test_filters_reach_the_retriever(pipe, demo_docs):
    flt = {"topic": ["astronomy"]}
    gen = Scripted([search("moon", filters=flt), '{"answer": "done [1]"}'])
    a = Agent(pipe, gen, k=3).run("moons?")
    expected = pipe.retriever.retrieve("moon", k=3, filter=flt).ids
    assert list(a.trace[0].document_ids) == expected
    gen = Scripted([search("moon", filters={"topic": ["geology"]}), '{"answer": "none"}'])
    assert Agent(pipe, gen).run("moons?").trace[0].document_ids == ()


def test_a_filtered_search_goes_through_the_whole_pipeline(demo_docs):
    """With filters the agent makes the pipeline's request (candidates, then every stage), not
    a hand-made retriever -> rerankers run: the compressor's order is what the model sees."""
    from rag.compressors.selection import LostInTheMiddleReorder
    from retrievers import BM25Retriever

    docs = [
        d.model_copy(update={"metadata": {**d.metadata, "year": 1990 + i}})
        for i, d in enumerate(demo_docs)
    ]
    pipe = Pipeline(retriever=BM25Retriever(), compressors=[LostInTheMiddleReorder()], k=3)
    pipe.index(docs)
    flt = {"year": {"gte": 1995}}
    gen = Scripted([search("moons of Saturn", filters=flt), '{"answer": "done [1]"}'])
    a = Agent(pipe, gen, k=3).run("moons?")
    expected = pipe.search("moons of Saturn", k=3, filter=flt)
    by_retriever = pipe.retriever.retrieve("moons of Saturn", k=3, filter=flt)
    assert list(a.trace[0].document_ids) == expected.ids
    assert expected.ids != by_retriever.ids  # reordered by the compressor, which now runs
    assert sorted(expected.ids) == sorted(by_retriever.ids)
    assert all(h.document.metadata["year"] >= 1995 for h in a.contexts)


def test_step_limit_ends_with_an_answer_over_what_was_seen(pipe):
    queries = ["rings", "moons of Saturn", "Titan lakes", "never issued"]
    gen = Scripted([*(search(q) for q in queries[:3]), "Titan has lakes [2]."])
    a = Agent(pipe, gen, max_steps=3, k=2).run("Which moon has lakes?")
    assert [s.query for s in a.trace if s.action == "search"] == queries[:3]
    assert a.trace[3].action == "budget" and "3 steps" in a.trace[3].detail
    assert len(gen.calls) == 4  # three steps, then one answer with the ordinary prompt
    assert "Sources:" in gen.calls[-1]["messages"][-1]["content"]
    seen = [i for s in a.trace[:3] for i in s.document_ids]
    assert {h.id for h in a.contexts} <= set(seen)
    assert a.cited_ids == [a.contexts[1].id]


def test_token_budget_bounds_every_step(pipe):
    long_search = search("moons " * 20)  # about 45 approximate tokens per reply
    gen = Scripted([long_search])
    a = Agent(pipe, gen, max_steps=10, max_tokens=100, step_tokens=64).run("moons?")
    budgets = [c["max_new_tokens"] for c in gen.calls[:-1]]
    assert budgets[0] == 64 and all(b <= 64 for b in budgets)
    assert len(budgets) < 10 and any(s.action == "budget" and "tokens" in s.detail for s in a.trace)


def test_citations_only_point_at_retrieved_sources(pipe):
    gen = Scripted(['{"answer": "Jupiter [1] and Saturn [3]."}'])
    a = Agent(pipe, gen).run("Which planets are giants?")  # answers before any search
    assert a.citations == () and a.invalid_markers == (1, 3) and a.contexts == ()
    gen = Scripted([search("Jupiter"), '{"answer": "Jupiter [1], see also [9]."}'])
    a = Agent(pipe, gen, k=2).run("Which planet is largest?")
    assert a.invalid_markers == (9,) and a.cited_ids == [a.contexts[0].id]


def test_an_uncited_answer_is_attributed_to_retrieved_sources_only(pipe):
    text = "Titan is the largest moon of Saturn and has lakes of liquid methane."
    gen = Scripted([search("Titan methane lakes"), json.dumps({"answer": text})])
    a = Agent(pipe, gen, k=2).run("Which moon has lakes?")
    assert a.cited_ids == ["titan"] and a.citations[0].source == "attributed"
    gen = Scripted([json.dumps({"answer": text})])  # nothing retrieved: nothing to attribute to
    assert Agent(pipe, gen).run("Which moon has lakes?").citations == ()


def test_native_tool_calls_use_the_openai_shape(pipe):
    def reply(messages):
        if messages[-1]["role"] == "tool":
            return {"content": "Titan [1].", "tool_calls": []}
        args = json.dumps({"query": "Saturn moon Titan"})
        call = {"id": "c7", "type": "function", "function": {"name": "search", "arguments": args}}
        return {"content": "", "tool_calls": [call]}

    gen = NativeScripted(reply)
    a = Agent(pipe, gen, k=2).run("What is Saturn's largest moon?")
    assert [t["function"]["name"] for t in gen.calls[0]["tools"]] == ["search", "fetch"]
    assert [m["role"] for m in gen.calls[0]["messages"]] == ["system", "user"]  # no example
    tool_msg = gen.calls[1]["messages"][-1]
    assert tool_msg["role"] == "tool" and tool_msg["tool_call_id"] == "c7"
    assert gen.calls[1]["messages"][-2]["tool_calls"][0]["id"] == "c7"
    assert a.text == "Titan [1]." and a.cited_ids == [a.contexts[0].id]


def test_agent_validates_its_limits(pipe):
    with pytest.raises(ConfigError, match="max_steps must be >= 1, got 0"):
        Agent(pipe, Scripted(["x"]), max_steps=0)
    with pytest.raises(ConfigError, match="needs a generator"):
        Agent(pipe)


def test_multihop_issues_the_model_query_and_keeps_the_trace(pipe):
    def reply(messages):
        found = "Found so far:" in messages[-1]["content"]
        return "Saturn known for" if found else "Saturn, known for its rings [2]."

    gen = Scripted(reply)
    question = "Which moon with methane lakes orbits a planet, and what is that planet known for?"
    a = MultiHop(pipe, gen, max_hops=3, k=1).run(question)
    steps = [(s.action, s.query) for s in a.trace]
    assert steps[:2] == [("search", question), ("search", "Saturn known for")]
    assert steps[2][0] == "stop"  # the model repeated its query: no third search
    seen = [s.document_ids[0] for s in a.trace[:2]]
    assert [h.id for h in a.contexts] == seen == ["titan", "saturn"]
    assert a.cited_ids == [seen[1]]
    assert "Found so far:" in gen.calls[0]["messages"][0]["content"]


def test_multihop_stops_on_done(pipe):
    gen = Scripted(["DONE", "Saturn [1]."])
    a = MultiHop(pipe, gen, max_hops=3, k=2).run("Which planet has rings?")
    assert [s.action for s in a.trace] == ["search", "stop", "answer"]


def test_chat_engine_hands_the_standalone_question_to_the_agent(pipe):
    from rag.app.chat import ChatEngine

    def reply(messages):
        if messages[0]["content"].startswith("Rewrite"):
            return "What is Saturn's biggest moon?"
        if messages[-1]["content"].startswith("Question:"):
            return search("largest moon of Saturn")
        return '{"answer": "Titan [2]."}'

    gen = Scripted(reply)
    engine = ChatEngine(pipe, gen, agent=Agent(pipe, gen, k=2))
    engine.ask("Tell me about Saturn.")
    a = engine.ask("What is its biggest moon?")
    assert [s.action for s in a.trace] == ["condense", "search", "answer"]
    assert a.trace[0].query == "What is Saturn's biggest moon?"
    assert gen.calls[-2]["messages"][-1]["content"] == "Question: What is Saturn's biggest moon?"
    turn = engine.conversation.turns[-1]
    assert [d.id for d in turn.sources] == [h.id for h in a.contexts]
    assert turn.cited == [a.contexts[1].document]
