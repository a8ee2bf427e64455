"""One model turn that may call tools, for any generator: the OpenAI-compatible server and the
LangChain / LlamaIndex chat models share it.

A generator with native tool calling (``supports_tools``, e.g.
``OpenAICompatibleGenerator(native_tools=True)``) gets the tools as they are. Any other generator
(SmolLM2 through transformers) is prompted to reply with one JSON object
(``prompts/templates/tools_system.txt``; ReAct: Yao et al., ICLR 2023); the object is parsed by
:mod:`rag.app.toolcalls` (repairs included) and a call becomes an OpenAI ``tool_calls`` entry.
Earlier calls are shown to the model as the JSON it is asked to write, tool results as user turns.

>>> text, calls, finish = tool_turn(gen, [{"role": "user", "content": "Moons of Mars?"}],
...                                 [SEARCH.schema()])                       # doctest: +SKIP
>>> calls[0]["function"]                                                     # doctest: +SKIP
{'name': 'search', 'arguments': '{"query": "moons of Mars"}'}
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from typing import Any

import prompts
from rag.app.toolcalls import Tool, ToolCall, ToolCallError, extract_json, to_action
from rag.core.errors import ConfigError

Message = dict[str, Any]


def message_text(content: Any) -> str:
    """The text of an OpenAI message ``content``: a string, or a list of ``text`` parts."""
    if content is None or isinstance(content, str):
        return content or ""
    out = []
    for part in content:
        if not isinstance(part, dict) or part.get("type") != "text":
            kind = part.get("type") if isinstance(part, dict) else type(part).__name__
            raise ConfigError(f"only text content parts are supported, got a {kind!r} part")
        out.append(str(part.get("text", "")))
    return "".join(out)


def as_tools(schemas: Sequence[dict[str, Any]]) -> dict[str, Tool]:
    """OpenAI ``tools=[{"type": "function", "function": {...}}]`` as :class:`Tool` s by name."""
    out = {}
    for s in schemas:
        fn = s.get("function") or {}
        params = fn.get("parameters") or {}
        if s.get("type", "function") != "function" or not fn.get("name"):
            raise ConfigError("each tool must be {'type': 'function', 'function': {'name', ...}}")
        out[fn["name"]] = Tool(
            fn["name"],
            str(fn.get("description", "")),
            dict(params.get("properties") or {}),
            tuple(params.get("required") or ()),
        )
    return out


def prompt_messages(messages: Sequence[Message], tools: dict[str, Tool]) -> list[dict[str, str]]:
    """The conversation for a generator without native tool calls: the tools described in the
    system message, earlier calls as JSON, results as user turns. The worked exchange of
    ``agent_example.txt`` opens it when a ``search`` tool is offered (SmolLM2-135M wrote no JSON
    without an example)."""
    from rag.app.agent import example_messages

    lines = "\n".join(t.line() for t in tools.values())
    system = [prompts.render("tools_system", tools=lines)]
    convo: list[dict[str, str]] = []
    for m in messages:
        role, text = m.get("role"), message_text(m.get("content"))
        if role in ("system", "developer"):
            system.append(text)
        elif role == "assistant" and m.get("tool_calls"):
            for c in m["tool_calls"]:
                fn = c.get("function") or {}
                args = fn.get("arguments") or "{}"
                args = json.loads(args) if isinstance(args, str) and args.strip() else args
                call = {"tool": fn.get("name", ""), "args": args}
                convo.append({"role": "assistant", "content": json.dumps(call)})
        elif role == "tool":
            convo.append({"role": "user", "content": text})
        else:
            convo.append({"role": str(role), "content": text})
    shots = example_messages() if "search" in tools else []
    return [{"role": "system", "content": "\n".join(system)}, *shots, *convo]


def parse_call(text: str, tools: dict[str, Tool]) -> ToolCall | Any:
    """:func:`rag.app.toolcalls.parse_reply`, except that an object naming a tool is a call even
    when it also carries an answer (a small model writes ``{"tool": ..., "args": ...,
    "answer": ...}``, guessing before it has the result)."""
    obj = extract_json(text)
    if isinstance(obj.get("tool", obj.get("name")), str):
        obj = {k: v for k, v in obj.items() if k not in ("answer", "final_answer", "final")}
    return to_action(obj, tools)


def tool_turn(
    generator: Any,
    messages: Sequence[Message],
    tools: Sequence[dict[str, Any]],
    max_new_tokens: int | None = None,
) -> tuple[str, list[dict[str, Any]], str]:
    """(content, OpenAI ``tool_calls``, finish_reason) of one turn of ``generator`` that may
    call ``tools`` (OpenAI schemas). A reply that is no valid call is the content."""
    from rag.app.agent import _native_reply

    if generator is None:
        raise ConfigError("this server has no generator: start it with --model to answer")
    kw = {"max_new_tokens": max_new_tokens} if max_new_tokens is not None else {}
    if getattr(generator, "supports_tools", False):
        raw = [{"content": "", **m} for m in messages]
        text, calls = _native_reply(generator.generate(raw, tools=list(tools), **kw))
        return text, calls, "tool_calls" if calls else "stop"
    specs = as_tools(tools)
    text = generator.generate(prompt_messages(messages, specs), **kw)
    try:
        action = parse_call(text, specs)
    except ToolCallError:  # not a tool call: the model answered in prose
        return text.strip(), [], "stop"
    if isinstance(action, ToolCall):
        call = {
            "id": f"call_{uuid.uuid4().hex[:24]}",
            "type": "function",
            "function": {"name": action.name, "arguments": json.dumps(action.args)},
        }
        return "", [call], "tool_calls"
    return action.text, [], "stop"
