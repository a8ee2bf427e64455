"""A generator whose output the test scripts: the server and the adapters are under test, not a
language model. It follows the Generator contract (``generate`` == joined ``stream``)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any


class ScriptedGenerator:
    """Answers with the first source's title and cites it as ``[1]``, in word-sized pieces."""

    model = "scripted"
    stop: list[str] = []

    def __init__(self) -> None:
        self.calls = 0

    def load(self) -> ScriptedGenerator:
        return self

    def stream(self, messages: list[dict[str, str]], **kwargs: Any) -> Iterator[str]:
        self.calls += 1
        user = messages[-1]["content"]
        # the answer prompt lists sources as "[1] Title: text"; take the first title
        first = user.split("[1]", 1)[1].split(":", 1)[0].strip() if "[1]" in user else "nothing"
        yield from ["The ", "answer ", "is ", f"{first} ", "[1]", "."]

    def generate(self, messages: list[dict[str, str]], **kwargs: Any) -> str:
        return "".join(self.stream(messages, **kwargs))
