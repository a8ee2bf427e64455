"""Scripted generators for testing the chat and agent loops (the loop is under test, not a model).

They follow the Generator contract (``generate``/``stream`` with ``max_new_tokens`` and ``stop``)
and record every call, so tests can check what the loop sent."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

from rag.generators.transformers import cut_at_stop


class Scripted:
    """Replies with ``replies`` in order (the last one repeats); records each call."""

    model = "scripted"
    stop: list[str] = []

    def __init__(self, replies: Sequence[Any] | Callable[[list[dict]], Any]) -> None:
        self.replies = replies
        self.calls: list[dict[str, Any]] = []

    def _next(self, messages: list[dict]) -> Any:
        if callable(self.replies):
            return self.replies(messages)
        return self.replies[min(len(self.calls) - 1, len(self.replies) - 1)]

    def generate(
        self,
        messages: Any,
        max_new_tokens: int | None = None,
        temperature: float | None = None,
        stop: Sequence[str] | None = None,
        **kw: Any,
    ) -> Any:
        self.calls.append(
            {"messages": [dict(m) for m in messages], "max_new_tokens": max_new_tokens, **kw}
        )
        reply = self._next(messages)
        if isinstance(reply, str) and stop:
            reply = cut_at_stop(reply, stop)[0]
        return reply

    def stream(self, messages: Any, **kw: Any) -> Iterator[str]:
        text = self.generate(messages, **kw)
        for i in range(0, len(text), 7):  # several pieces, as a streamer yields
            yield text[i : i + 7]


class NativeScripted(Scripted):
    """A generator with native tool calling (OpenAI message dicts)."""

    supports_tools = True


def rule_replies(messages: list[dict]) -> str:
    """A deterministic stand-in for a chat model: rewrites follow-ups, answers citing [1]."""
    system = messages[0]["content"]
    last = messages[-1]["content"]
    if system.startswith("Rewrite"):
        earlier = last.split("\n")[0].removeprefix("Earlier: ")
        follow = last.split("\n")[1].removeprefix("Follow-up: ")
        topic = earlier.rstrip("?.").split()[-1]
        return follow.replace(" it ", f" {topic} ").replace(" its ", f" {topic}'s ")
    first = next((ln for ln in last.splitlines() if ln.startswith("[1] ")), "[1] nothing")
    return f"From the first source, {first[4:40].strip()} [1]."
