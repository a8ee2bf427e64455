"""Tool calls: declared tools, and a robust parser for the JSON a model writes to call them.

A model that has no native tool calling is asked (``prompts/templates/agent_system.txt``) to reply
with one JSON object, ReAct style (Yao et al., "ReAct: Synergizing Reasoning and Acting in
Language Models", ICLR 2023)::

    {"tool": "search", "args": {"query": "largest moon of Saturn"}}
    {"answer": "Titan is Saturn's largest moon [2]."}

Small models wrap that object in prose or code fences, use single quotes, leave trailing commas,
run out of tokens before the closing braces, or write OpenAI's ``{"name": ..., "arguments": "..."}``
shape; all of these parse. Anything else raises
:class:`ToolCallError` whose message is written for the model, which the agent loop sends back.

>>> parse_reply('Sure! {"tool": "search", "args": {"query": "rings"},}', {"search": SEARCH})
ToolCall(name='search', args={'query': 'rings'}, id='')
"""

from __future__ import annotations

import ast
import json
import re
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from rag.core.errors import RagError


class ToolCallError(RagError, ValueError):
    """A reply that is not a usable tool call; the message tells the model how to fix it."""


@dataclass(frozen=True)
class Tool:
    """A tool the model may call: a name, a description and a JSON-schema of its arguments."""

    name: str
    description: str
    properties: dict[str, dict[str, Any]]
    required: tuple[str, ...] = ()

    def schema(self) -> dict[str, Any]:
        """The OpenAI / vLLM ``tools=[...]`` entry for native tool calling."""
        params = {"type": "object", "properties": self.properties, "required": list(self.required)}
        return {
            "type": "function",
            "function": {"name": self.name, "description": self.description, "parameters": params},
        }

    def line(self) -> str:
        """One line for the prompt: ``search(query, instruction?, filters?): ...``."""
        args = ", ".join(p if p in self.required else f"{p}?" for p in self.properties)
        return f"- {self.name}({args}): {self.description}"


SEARCH = Tool(
    "search",
    "search the collection; returns numbered sources",
    {
        "query": {"type": "string", "description": "search words"},
        "instruction": {"type": "string", "description": "what counts as relevant"},
        "filters": {
            "type": "object",
            "description": 'metadata filter, e.g. {"year": {"gte": 2000}}',
        },
    },
    ("query",),
)
FETCH = Tool(
    "fetch",
    "read one document by its id (ids appear in search results)",
    {"id": {"type": "string", "description": "a document id"}},
    ("id",),
)


@dataclass(frozen=True)
class ToolCall:
    name: str
    args: dict[str, Any] = field(default_factory=dict)
    id: str = ""


@dataclass(frozen=True)
class FinalAnswer:
    text: str


_TYPES: dict[str, type | tuple[type, ...]] = {
    "string": str,
    "object": dict,
    "integer": int,
    "number": (int, float),
    "boolean": bool,
}
_TRAILING_COMMA = re.compile(r",\s*([}\]])")


def _balanced_objects(text: str) -> list[str]:
    """Every top-level ``{...}`` substring, braces inside quoted strings ignored."""
    out, depth, start, quote, escaped = [], 0, -1, "", False
    for i, ch in enumerate(text):
        if quote:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == quote:
                quote = ""
        elif ch in "\"'" and depth > 0:
            quote = ch
        elif ch == "{":
            if depth == 0:
                start = i
            depth += 1
        elif ch == "}" and depth > 0:
            depth -= 1
            if depth == 0:
                out.append(text[start : i + 1])
    if depth > 0:  # cut off by the token limit: close the open string and objects
        out.append(text[start:] + quote + "}" * depth)
    return out


def _loads(chunk: str) -> Any:
    for candidate in (chunk, _TRAILING_COMMA.sub(r"\1", chunk)):
        try:
            return json.loads(candidate)
        except json.JSONDecodeError:
            pass
        try:  # single quotes, True/False/None: a Python literal (its escape warnings muted)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return ast.literal_eval(candidate)
        except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
            pass
    return None


def extract_json(text: str) -> dict[str, Any]:
    """The first JSON object in ``text`` (after light repairs), else :class:`ToolCallError`."""
    chunks = _balanced_objects(text)
    if not chunks:
        raise ToolCallError("no JSON object found in your reply")
    for chunk in chunks:
        obj = _loads(chunk)
        if isinstance(obj, dict):
            return obj
    raise ToolCallError(f"this is not valid JSON: {chunks[0][:120]}")


def _args(raw: Any) -> dict[str, Any]:
    if raw is None:
        return {}
    if isinstance(raw, str):  # OpenAI sends arguments as a JSON string
        raw = _loads(raw) if raw.strip() else {}
    if not isinstance(raw, dict):
        raise ToolCallError('"args" must be a JSON object, like {"query": "..."}')
    return raw


def to_action(obj: Mapping[str, Any], tools: Mapping[str, Tool]) -> ToolCall | FinalAnswer:
    """Interpret one parsed object as a tool call or a final answer, and validate its arguments."""
    if "function" in obj and isinstance(obj["function"], dict):  # OpenAI tool_call entry
        return to_action({**obj["function"], "id": obj.get("id", "")}, tools)
    for key in ("answer", "final_answer", "final"):
        if isinstance(obj.get(key), str):
            return FinalAnswer(obj[key].strip())
    name = obj.get("tool", obj.get("name", obj.get("action")))
    if name is None:
        raise ToolCallError('the object has no "tool" and no "answer" key')
    if not isinstance(name, str):
        raise ToolCallError(f'"tool" must be a tool name, got {name!r}')
    raw = obj.get("args", obj.get("arguments", obj.get("parameters", obj.get("action_input"))))
    if name in ("answer", "final_answer", "finish"):
        args = raw if isinstance(raw, dict) else {"text": raw}
        text = next((v for v in args.values() if isinstance(v, str)), "")
        if not text.strip():
            raise ToolCallError("the answer is empty")
        return FinalAnswer(text.strip())
    if name not in tools:
        known = ", ".join(sorted(tools))
        raise ToolCallError(f"unknown tool {name!r}; the tools are: {known}, or give the answer")
    return ToolCall(str(name), check_args(tools[name], _args(raw)), str(obj.get("id", "")))


def check_args(tool: Tool, args: dict[str, Any]) -> dict[str, Any]:
    """Drop unknown arguments, require required ones, check types (messages for the model)."""
    missing = [p for p in tool.required if args.get(p) in (None, "")]
    if missing:
        raise ToolCallError(f"{tool.name} needs {', '.join(repr(p) for p in missing)}")
    out = {}
    for p, spec in tool.properties.items():
        if args.get(p) is None:
            continue
        want = _TYPES.get(spec.get("type", ""), object)
        if not isinstance(args[p], want):
            raise ToolCallError(f"{tool.name}: {p!r} must be a {spec['type']}, got {args[p]!r}")
        out[p] = args[p]
    return out


def parse_reply(text: str, tools: Mapping[str, Tool]) -> ToolCall | FinalAnswer:
    """Parse a model's text reply into a :class:`ToolCall` or :class:`FinalAnswer`."""
    return to_action(extract_json(text), tools)
