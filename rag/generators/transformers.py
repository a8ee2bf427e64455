"""Local generation with transformers: chat template, greedy or sampled decoding, streaming, stops.

The model is the shared :class:`rag.core.llm.TransformersLLM` (:func:`rag.core.llm.get_llm`): an LLM
reranker or judge on the same model and device uses the same loaded weights. The embedded default
is SmolLM2-135M-Instruct (``smollm2-135m``), which runs on a laptop CPU.

>>> gen = TransformersGenerator(max_new_tokens=32)
>>> gen.generate([{"role": "user", "content": "Say hi."}])      # doctest: +SKIP
'Hi! How can I help you today?'
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, ClassVar, cast

from rag.core.llm import TransformersLLM, get_llm
from rag.core.llm.hf import StopOnGeneratedText as _StopOnGeneratedText
from rag.generators.base import (
    BaseGenerator,
    Messages,
    Sampling,
    StopFilter,
    check_messages,
    check_sampling,
    cut_at_stop,
)

__all__ = [
    "Messages",
    "StopFilter",
    "TransformersGenerator",
    "_StopOnGeneratedText",
    "check_messages",
    "check_sampling",
    "cut_at_stop",
]


class TransformersGenerator(BaseGenerator):
    """A causal LM from transformers behind the Generator contract.

    Args:
        model: short name, HF id or local path.
        max_new_tokens: default generation budget (override per call).
        temperature: 0 means greedy decoding (deterministic).
        stop: strings that end generation (not included in the output).
        device: ``auto`` | ``cpu`` | ``cuda``.

    After :meth:`load`: ``runtime`` (the shared :class:`rag.core.llm.TransformersLLM`) and, from it,
    ``tokenizer``, ``lm``.
    """

    name: ClassVar[str] = "transformers_generator"
    requires: ClassVar[tuple[str, ...]] = ("torch", "transformers")

    def __init__(
        self,
        model: str = "smollm2-135m",
        max_new_tokens: int = 256,
        temperature: float = 0.0,
        stop: list[str] | None = None,
        device: str = "auto",
    ) -> None:
        super().__init__(max_new_tokens, temperature, stop)
        self.model = model
        self.device = device

    def _load(self) -> None:
        rt = cast(TransformersLLM, get_llm("transformers", self.model, self.device)).load()
        self.runtime = rt
        self.tokenizer, self.lm = rt.tokenizer, rt.lm
        self._torch, self._transformers = rt.torch, rt.transformers

    @property
    def model_id(self) -> str:
        self.load()
        return str(getattr(self.lm.config, "_name_or_path", self.model))

    def prompt_ids(self, messages: Messages | str) -> Any:
        """Token ids ``(1, L)`` of the chat-templated prompt, ready for generation."""
        self.load()
        return self.runtime.prompt_ids(check_messages(messages))

    def _stream(self, messages: Messages, sampling: Sampling) -> Iterator[str]:
        return self.runtime.stream(
            messages, sampling.max_new_tokens, sampling.temperature, sampling.stop
        )
