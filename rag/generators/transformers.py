"""Local generation with transformers: chat template, greedy or sampled decoding, streaming, stops.

The embedded default is SmolLM2-135M-Instruct (``smollm2-135m``), which runs on a laptop CPU.

>>> gen = TransformersGenerator(max_new_tokens=32)
>>> gen.generate([{"role": "user", "content": "Say hi."}])      # doctest: +SKIP
'Hi! How can I help you today?'
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from typing import Any, ClassVar

from rag.errors import ConfigError
from rag.extras import require
from rag.models import load_hf
from rag.nodes import Node

Messages = list[dict[str, str]]


def check_messages(messages: Any) -> Messages:
    if isinstance(messages, str):
        return [{"role": "user", "content": messages}]
    if not messages or not all(
        isinstance(m, dict) and "role" in m and "content" in m for m in messages
    ):
        raise ConfigError("messages must be a non-empty list of {'role', 'content'} dicts or a str")
    return list(messages)


def check_sampling(max_new_tokens: int, temperature: float) -> None:
    """The sampling settings every generator backend validates the same way."""
    if max_new_tokens < 1:
        raise ConfigError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
    if temperature < 0:
        raise ConfigError(f"temperature must be >= 0, got {temperature}")


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


class _StopOnGeneratedText:
    """Stop when a stop string appears in the generated text. transformers' own ``stop_strings``
    also matches across the prompt boundary (a prompt ending in "\n" plus a generated "[" matches
    "\n["), so only the new tokens are decoded here."""

    def __init__(self, tokenizer: Any, stops: Sequence[str], prompt_len: int) -> None:
        self.tokenizer, self.stops, self.prompt_len = tokenizer, list(stops), prompt_len

    def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
        import torch

        new = input_ids[:, self.prompt_len :]
        texts = self.tokenizer.batch_decode(new, skip_special_tokens=True)
        done = [any(s in t for s in self.stops) for t in texts]
        return torch.tensor(done, device=input_ids.device)


class TransformersGenerator(Node):
    """A causal LM from transformers behind the Generator contract.

    Args:
        model: short name, HF id or local path.
        max_new_tokens: default generation budget (override per call).
        temperature: 0 means greedy decoding (deterministic).
        stop: strings that end generation (not included in the output).
        device: ``auto`` | ``cpu`` | ``cuda``.
    """

    name: ClassVar[str] = "transformers_generator"
    kind: ClassVar[str] = "generator"
    requires: ClassVar[tuple[str, ...]] = ("torch", "transformers")

    def __init__(
        self,
        model: str = "smollm2-135m",
        max_new_tokens: int = 256,
        temperature: float = 0.0,
        stop: list[str] | None = None,
        device: str = "auto",
    ) -> None:
        check_sampling(max_new_tokens, temperature)
        self.model = model
        self.max_new_tokens = max_new_tokens
        self.temperature = temperature
        self.stop = list(stop) if stop is not None else []
        self.device = device

    def _load(self) -> None:
        self._torch = require("torch", feature="local generation")
        self._transformers = require("transformers", feature="local generation")
        self.tokenizer, self.lm, _ = load_hf(
            self.model, "AutoModelForCausalLM", self.device, dtype=self._torch.float32
        )

    @property
    def model_id(self) -> str:
        self.load()
        return str(getattr(self.lm.config, "_name_or_path", self.model))

    def prompt_ids(self, messages: Messages) -> Any:
        """Token ids ``(1, L)`` of the chat-templated prompt, ready for generation."""
        self.load()
        text = self.tokenizer.apply_chat_template(
            check_messages(messages), tokenize=False, add_generation_prompt=True
        )
        return self.tokenizer(text, return_tensors="pt", add_special_tokens=False).to(
            self.lm.device
        )

    def _gen_kwargs(self, max_new_tokens: int | None, temperature: float | None) -> dict[str, Any]:
        t = temperature if temperature is not None else self.temperature
        kw: dict[str, Any] = {
            "max_new_tokens": max_new_tokens if max_new_tokens is not None else self.max_new_tokens,
            "pad_token_id": self.tokenizer.pad_token_id or self.tokenizer.eos_token_id,
        }
        kw.update({"do_sample": True, "temperature": t} if t > 0 else {"do_sample": False})
        if t == 0:  # silence sampling defaults from generation_config under greedy decoding
            kw.update({"temperature": None, "top_p": None, "top_k": None})
        return kw

    def stream(
        self,
        messages: Messages | str,
        max_new_tokens: int | None = None,
        temperature: float | None = None,
        stop: Sequence[str] | None = None,
    ) -> Iterator[str]:
        """Yield text pieces as they are decoded; stops are honoured across piece boundaries."""
        inputs = self.prompt_ids(check_messages(messages))
        streamer = self._transformers.TextIteratorStreamer(
            self.tokenizer, skip_prompt=True, skip_special_tokens=True
        )
        stops = list(stop) if stop is not None else self.stop
        kwargs = {**inputs, **self._gen_kwargs(max_new_tokens, temperature), "streamer": streamer}
        if stops:  # end decoding on the model side too, not only in what we yield
            kwargs["stopping_criteria"] = self._transformers.StoppingCriteriaList(
                [_StopOnGeneratedText(self.tokenizer, stops, inputs["input_ids"].shape[1])]
            )
        err: list[BaseException] = []

        def run() -> None:
            try:
                with self._torch.inference_mode():
                    self.lm.generate(**kwargs)
            except BaseException as e:  # surfaced to the caller below
                err.append(e)
                streamer.end()

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        shown = StopFilter(stops)
        for piece in streamer:
            if out := shown.feed(piece):
                yield out
            if shown.stopped:
                break
        else:
            if rest := shown.flush():
                yield rest
        thread.join()
        if err:
            raise err[0]

    def generate(
        self,
        messages: Messages | str,
        max_new_tokens: int | None = None,
        temperature: float | None = None,
        stop: Sequence[str] | None = None,
    ) -> str:
        return "".join(self.stream(messages, max_new_tokens, temperature, stop))
