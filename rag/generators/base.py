"""The base of every generator: sampling settings, message checks, stop strings, and
``generate`` = ``"".join(stream(...))``.

A backend implements one hook, ``_stream(messages, sampling) -> Iterator[str]``: the raw text
pieces of one assistant turn (it may end decoding at a stop string, but need not cut the text).
:meth:`BaseGenerator.stream` validates the messages and the per-call settings, and passes the
pieces through :class:`StopFilter`, so every backend honours stop strings the same way, across
piece boundaries, and rejects bad settings with the same one-line :class:`ConfigError`. A backend
that returns finished text only (``streams_tokens = False``) is yielded as one piece.

>>> class Echo(BaseGenerator):
...     name = ""
...     def _stream(self, messages, sampling):
...         yield from messages[-1]["content"].split(" ")
>>> Echo(stop=["c"]).generate("a b c d")
'ab'
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from rag.core.concurrency import current_cancel
from rag.core.errors import ConfigError
from rag.core.nodes import Node

Messages = list[dict[str, Any]]


def check_messages(messages: Any) -> Messages:
    """A chat as a list of ``{"role", "content"}`` dicts (a ``str`` is one user message)."""
    if isinstance(messages, str):
        return [{"role": "user", "content": messages}]
    if not messages or not all(
        isinstance(m, dict) and "role" in m and "content" in m for m in messages
    ):
        raise ConfigError("messages must be a non-empty list of {'role', 'content'} dicts or a str")
    return list(messages)


def check_sampling(max_new_tokens: Any, temperature: Any) -> None:
    """The sampling settings every generator backend validates the same way."""
    if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, numbers.Integral):
        raise ConfigError(f"max_new_tokens must be an int >= 1, got {max_new_tokens!r}")
    if max_new_tokens < 1:
        raise ConfigError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
    if isinstance(temperature, bool) or not isinstance(temperature, numbers.Real):
        raise ConfigError(f"temperature must be a number >= 0, got {temperature!r}")
    if not float(temperature) >= 0 or math.isinf(temperature):  # also NaN
        raise ConfigError(f"temperature must be >= 0, got {temperature}")


def check_stop(stop: Any) -> list[str]:
    """Stop strings as a list (``None``: none); a bare string or non-strings are an error."""
    if stop is None:
        return []
    if isinstance(stop, str) or not all(isinstance(s, str) for s in stop):
        raise ConfigError(f"stop must be a list of strings, got {stop!r}")
    return list(stop)


def cut_at_stop(text: str, stop: Sequence[str]) -> tuple[str, bool]:
    """Cut ``text`` before the earliest stop string; return (text, stopped)."""
    cut = min((i for s in stop if s and (i := text.find(s)) >= 0), default=-1)
    return (text[:cut], True) if cut >= 0 else (text, False)


class StopFilter:
    """Stop strings over streamed text: :meth:`feed` returns what may be shown now, holding back
    as many characters as the longest stop so a stop split across pieces is never shown;
    ``stopped`` turns true once one has appeared (``text`` then ends before it)."""

    def __init__(self, stops: Sequence[str]) -> None:
        self.stops = list(stops)
        self.hold = max((len(s) for s in self.stops), default=0)
        self.text, self.emitted, self.stopped = "", 0, False

    def feed(self, piece: str) -> str:
        self.text += piece
        cut, self.stopped = cut_at_stop(self.text, self.stops)
        if self.stopped:
            self.text = cut
        safe = len(cut) if self.stopped else len(self.text) - self.hold
        out = self.text[self.emitted : max(self.emitted, safe)]
        self.emitted += len(out)
        return out

    def flush(self) -> str:
        """The held-back rest, once the stream has ended without a stop."""
        out = self.text[self.emitted :]
        self.emitted = len(self.text)
        return out


def stop_filtered(pieces: Iterator[str], stops: Sequence[str]) -> Iterator[str]:
    """``pieces`` with stop strings applied; the source is closed as soon as one appears (a
    server stream is dropped, a local decoding thread ends at its own stopping criterion)."""
    shown = StopFilter(stops)
    try:
        for piece in pieces:
            if out := shown.feed(piece):
                yield out
            if shown.stopped:
                return
        if rest := shown.flush():
            yield rest
    finally:
        close = getattr(pieces, "close", None)
        if close is not None:
            close()


def _until_cancelled(pieces: Iterator[str]) -> Iterator[str]:
    """``pieces`` until the current request is cancelled (:mod:`rag.core.concurrency`): checked at
    every piece, so a client that went away stops the generation at its next token."""
    cancel = current_cancel()
    if cancel is None:
        yield from pieces
        return
    try:
        for piece in pieces:
            cancel.pieces += 1
            if cancel.cancelled:
                return
            yield piece
    finally:
        close = getattr(pieces, "close", None)
        if close is not None:
            close()


@dataclass(frozen=True)
class Sampling:
    """The settings of one call: the generator's defaults with the call's overrides."""

    max_new_tokens: int
    temperature: float
    stop: tuple[str, ...]


class BaseGenerator(Node):
    """Owns the sampling settings, message checks, stop handling and ``generate``.

    Args:
        max_new_tokens: default generation budget (override per call).
        temperature: 0 means greedy decoding.
        stop: strings that end generation (not included in the output).

    Subclasses implement :meth:`_stream`; :meth:`generate` is the concatenation of
    :meth:`stream` (a backend whose transport differs for one-shot answers may override
    ``generate``, keeping that equality).
    """

    kind: ClassVar[str] = "generator"
    # False for backends whose hook returns finished text (vLLM's offline engine, xRAG): the
    # text is then cut at the first stop and yielded as one piece, with nothing held back
    streams_tokens: ClassVar[bool] = True

    def __init__(
        self, max_new_tokens: int = 256, temperature: float = 0.0, stop: list[str] | None = None
    ) -> None:
        check_sampling(max_new_tokens, temperature)
        self.max_new_tokens = max_new_tokens
        self.temperature = temperature
        self.stop = check_stop(stop)

    def sampling(
        self,
        max_new_tokens: int | None = None,
        temperature: float | None = None,
        stop: Sequence[str] | None = None,
    ) -> Sampling:
        """This call's settings, validated: each override wins over the default when given."""
        n = max_new_tokens if max_new_tokens is not None else self.max_new_tokens
        t = temperature if temperature is not None else self.temperature
        check_sampling(n, t)
        stops = check_stop(stop) if stop is not None else self.stop
        return Sampling(int(n), float(t), tuple(stops))

    def _stream(self, messages: Messages, sampling: Sampling) -> Iterator[str]:
        """Hook: the raw text pieces of one assistant turn for checked ``messages``."""
        raise NotImplementedError

    def stream(
        self,
        messages: Messages | str,
        max_new_tokens: int | None = None,
        temperature: float | None = None,
        stop: Sequence[str] | None = None,
    ) -> Iterator[str]:
        """Text pieces as they are decoded; stops are honoured across piece boundaries. Bad
        messages or settings raise here, before the first piece is asked for."""
        msgs = check_messages(messages)
        s = self.sampling(max_new_tokens, temperature, stop)
        return self._stream_checked(msgs, s)

    def _stream_checked(self, messages: Messages, s: Sampling) -> Iterator[str]:
        self.load()
        if self.streams_tokens:
            yield from stop_filtered(_until_cancelled(self._stream(messages, s)), s.stop)
        elif text := cut_at_stop("".join(self._stream(messages, s)), s.stop)[0]:
            yield text

    def generate(
        self,
        messages: Messages | str,
        max_new_tokens: int | None = None,
        temperature: float | None = None,
        stop: Sequence[str] | None = None,
    ) -> str:
        """The whole reply: ``"".join(self.stream(...))``."""
        return "".join(self.stream(messages, max_new_tokens, temperature, stop))
