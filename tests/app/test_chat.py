"""Conversation state, the token budget, follow-up modes and the chat engine (scripted generator),
plus one real SmolLM2 rewrite."""

from __future__ import annotations

import json

import pytest
from scripted_generators import Scripted, rule_replies

from rag.app.chat import (
    ChatEngine,
    Conversation,
    Turn,
    approx_tokens,
    clean_rewrite,
    condense_messages,
    fit_history,
)
from rag.core.errors import ConfigError, DataError
from rag.core.types import Citation, Document
from rag.pipeline import Pipeline


@pytest.fixture()
def pipe(demo_docs):
    from retrievers import BM25Retriever

    return Pipeline(retriever=BM25Retriever(), k=3).index(demo_docs)


def _turn(q: str, a: str = "an answer") -> Turn:
    return Turn(question=q, answer=a, query=q)


def test_fit_history_drops_oldest_first_and_never_the_question():
    turns = [_turn(f"question number {i}", "x" * 40) for i in range(6)]
    count = approx_tokens
    cost = count(turns[0].question) + count(turns[0].answer)
    q = "the current question"
    kept = fit_history(turns, q, count(q) + 2 * cost, count)
    assert [t.question for t in kept] == ["question number 4", "question number 5"]
    assert fit_history(turns, q, count(q) + 2 * cost - 1, count) == turns[5:]
    assert fit_history(turns, "long " * 500, 10, count) == []  # the question alone is over budget
    assert fit_history(turns, q, 10**6, count) == turns
    with pytest.raises(ConfigError, match="max_tokens must be >= 0"):
        fit_history(turns, q, -1)


def test_conversation_round_trips_through_json(tmp_path):
    d = Document(id="saturn", text="Saturn has rings.", title="Saturn")
    turn = Turn(
        question="Which planet has rings?",
        answer="Saturn [1].",
        query="Which planet has rings?",
        citations=(Citation(marker=1, document_id="saturn"),),
        sources=(d,),
    )
    conv = Conversation().add(turn).add(_turn("and its moons?"))
    path = conv.save(tmp_path / "c.json")
    back = Conversation.load(path)
    assert back == conv and back.turns[0].cited == [d]
    assert json.loads(path.read_text())["id"] == conv.id
    (tmp_path / "bad.json").write_text('{"turns": 3}')
    with pytest.raises(DataError, match="not a saved conversation"):
        Conversation.load(tmp_path / "bad.json")


def test_condense_prompt_holds_examples_history_and_follow_up():
    msgs = condense_messages([_turn("Tell me about Saturn.")], "What is its biggest moon?")
    assert msgs[0]["role"] == "system" and msgs[-1]["role"] == "user"
    assert [m["role"] for m in msgs[1:-1]] == ["user", "assistant"] * 2  # two worked examples
    assert "Tell me about Saturn." in msgs[-1]["content"]
    assert "What is its biggest moon?" in msgs[-1]["content"]
    assert clean_rewrite('\n  Standalone question: "What is Saturn\'s moon?"\nmore') == (
        "What is Saturn's moon?"
    )


def test_condense_mode_retrieves_with_the_rewrite(pipe):
    gen = Scripted(rule_replies)
    engine = ChatEngine(pipe, gen, mode="condense")
    a1 = engine.ask("Tell me about Saturn.")
    assert len(gen.calls) == 1  # no rewrite without history
    assert a1.trace[0].query == "Tell me about Saturn." and a1.trace[0].detail == "as asked"
    a2 = engine.ask("What is its biggest moon?")
    assert a2.trace[0].query == "What is Saturn's biggest moon?"
    search = a2.trace[1]
    assert search.action == "search" and search.query == "What is Saturn's biggest moon?"
    assert list(search.document_ids) == [h.id for h in a2.contexts]
    assert {"saturn", "titan"} <= set(search.document_ids)
    turn = engine.conversation.turns[1]
    assert turn.query == "What is Saturn's biggest moon?"
    assert turn.question.startswith("What is its")
    assert turn.cited and turn.cited[0].id == a2.contexts[0].id
    # the answer prompt carries the earlier exchange before the sources and the question
    answer_msgs = gen.calls[-1]["messages"]
    assert [m["role"] for m in answer_msgs] == ["system", "user", "assistant", "user"]
    assert answer_msgs[1]["content"] == "Tell me about Saturn."


def test_empty_rewrite_falls_back_to_the_follow_up(pipe):
    engine = ChatEngine(pipe, Scripted(["Saturn is a planet [1].", "   \n", "It has moons [1]."]))
    engine.ask("Tell me about Saturn.")
    a = engine.ask("What is its biggest moon?")
    assert a.trace[0].query == "What is its biggest moon?"
    assert "empty rewrite" in a.trace[0].detail


@pytest.mark.parametrize("mode", ["none", "concat", "fusion"])
def test_modes_without_a_model_call(pipe, mode):
    gen = Scripted(["An answer [1]."])
    engine = ChatEngine(pipe, gen, mode=mode)
    engine.ask("Tell me about Saturn.")
    a = engine.ask("What is its biggest moon?")
    assert len(gen.calls) == 2  # answers only: no rewrite call
    used = a.trace[0].query
    if mode == "none":
        assert used == "What is its biggest moon?"
    else:
        assert used == "Tell me about Saturn. What is its biggest moon?"
    if mode == "fusion":  # RRF of the follow-up alone and the history: both contribute
        alone = pipe.search("What is its biggest moon?").ids
        concat = pipe.search(used).ids
        assert set(a.trace[1].document_ids) <= set(alone) | set(concat)
        assert alone[0] in a.trace[1].document_ids and concat[0] in a.trace[1].document_ids


def test_history_budget_limits_what_the_answer_prompt_sees(pipe):
    gen = Scripted(["A long answer about planets and moons [1]. " * 3])
    engine = ChatEngine(pipe, gen, mode="none", history_tokens=60)
    for q in ["Tell me about Saturn.", "Tell me about Jupiter.", "Tell me about Mars."]:
        engine.ask(q)
    msgs = gen.calls[-1]["messages"]
    history = [m["content"] for m in msgs[1:-1] if m["role"] == "user"]
    assert history == ["Tell me about Jupiter."]  # the oldest turn no longer fits
    assert "Tell me about Mars." in msgs[-1]["content"]


def test_engine_rejects_bad_config(pipe):
    with pytest.raises(ConfigError, match="mode must be one of"):
        ChatEngine(pipe, Scripted(["x"]), mode="magic")
    with pytest.raises(ConfigError, match="needs a generator"):
        ChatEngine(pipe)
    with pytest.raises(ConfigError, match="question is empty"):
        ChatEngine(pipe, Scripted(["x"])).ask("  ")


def test_sessions_keep_conversations_apart(pipe):
    from rag.app.chat_service import ChatSessions

    sessions = ChatSessions(pipe, Scripted(rule_replies), max_conversations=2)
    r1 = sessions.chat("Tell me about Saturn.")
    cid = r1["conversation_id"]
    r2 = sessions.chat("What is its biggest moon?", cid)
    assert r2["conversation_id"] == cid and r2["query"] == "What is Saturn's biggest moon?"
    assert r2["citations"] and r2["citations"][0]["document_id"] == r2["sources"][0]["id"]
    other = sessions.chat("What is its biggest moon?")
    assert other["conversation_id"] != cid and other["query"] == "What is its biggest moon?"
    assert len(sessions.get(cid).turns) == 2
    json.dumps(r2)  # JSON-safe
    events = list(sessions.stream("And its rings?", cid))
    assert {e["type"] for e in events[:-1]} == {"delta"} and events[-1]["type"] == "answer"
    assert "".join(e["text"] for e in events[:-1]).strip() == events[-1]["answer"]
    agentic = sessions.chat("Which moon has lakes?", cid, agent=True)  # the model writes no JSON
    actions = [s["action"] for s in agentic["trace"]]
    assert actions[0] == "condense" and "error" in actions and actions[-2:] == ["search", "answer"]


def test_smollm2_condenses_a_follow_up(smollm):
    """The real 135M model, greedy: it resolves "its" when the earlier question names the topic."""
    from rag.app.chat import condense_question

    out = condense_question(smollm, [_turn("Tell me about Saturn.")], "What is its biggest moon?")
    assert "saturn" in out.lower() and "moon" in out.lower()


def test_the_rewrite_sees_only_the_latest_turns(pipe):
    gen = Scripted(rule_replies)
    engine = ChatEngine(pipe, gen, mode="condense", condense_turns=1)
    for q in ["Tell me about Jupiter.", "Tell me about Saturn.", "What is its biggest moon?"]:
        engine.ask(q)
    rewrite_prompt = gen.calls[-2]["messages"][-1]["content"]
    assert rewrite_prompt.startswith("Earlier: Tell me about Saturn.\n")
    assert engine.conversation.turns[-1].query == "What is Saturn's biggest moon?"
    with pytest.raises(ConfigError, match="condense_turns must be >= 1"):
        ChatEngine(pipe, gen, condense_turns=0)
