"""The transformers backend of the LLM runtime: one causal LM (CPU or GPU) for generation
(token streaming with stop strings), next-token log-probabilities and constrained greedy
decoding. Loaded in float32 through :func:`rag.core.models.load_hf`, so greedy outputs are the same
on every CPU.

>>> lm = TransformersLLM("smollm2-135m").load()                    # doctest: +SKIP
>>> "".join(lm.stream([{"role": "user", "content": "Say hi."}], 16, 0.0, []))  # doctest: +SKIP
"""

from __future__ import annotations

import inspect
import threading
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from rag.core.concurrency import current_cancel
from rag.core.extras import require
from rag.core.llm.base import provenance
from rag.core.models import load_hf

Messages = list[dict[str, Any]]


class StopOnGeneratedText:
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


class StopOnCancel:
    """Count decoding steps into a request's :class:`rag.core.concurrency.Cancel` and end decoding
    at the next step once it is set (a client that went away, a timeout, a shutdown)."""

    def __init__(self, cancel: Any) -> None:
        self.cancel = cancel

    def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
        import torch

        self.cancel.tokens += 1
        return torch.full(
            (input_ids.shape[0],), self.cancel.cancelled, dtype=torch.bool, device=input_ids.device
        )


def allow_only(transformers: Any, allowed: list[int]) -> Any:
    """A LogitsProcessor that sets every token outside ``allowed`` to ``-inf``."""

    class AllowOnly(transformers.LogitsProcessor):
        def __init__(self) -> None:
            self.ids: Any = None

        def __call__(self, input_ids: Any, scores: Any) -> Any:
            if self.ids is None or self.ids.device != scores.device:
                import torch

                self.ids = torch.tensor(allowed, device=scores.device)
            masked = scores.new_full(scores.shape, float("-inf"))
            masked[:, self.ids] = scores[:, self.ids]
            return masked

    return AllowOnly()


class TransformersLLM:
    """A causal LM from transformers, shared by generators, LLM rerankers and judges.

    Args:
        model: short name (``smollm2-135m``), HF id or local path.
        device: ``auto`` (CUDA if present) | ``cpu`` | ``cuda``.

    After :meth:`load`: ``tokenizer``, ``lm`` (the ``AutoModelForCausalLM``), ``torch``,
    ``transformers``, ``provenance``; ``loads`` counts real loads (1 once loaded).
    """

    backend = "transformers"

    def __init__(self, model: str, device: str = "auto") -> None:
        self.model = model
        self.device = device
        self.loads = 0
        self.lm: Any = None
        self._allowed: dict[str, list[int]] = {}
        self._lock = threading.Lock()

    def load(self) -> TransformersLLM:
        """Load tokenizer and weights once (thread-safe, idempotent); returns ``self``."""
        with self._lock:
            if self.lm is None:
                self.torch = require("torch", feature="local LLMs")
                self.transformers = require("transformers", feature="local LLMs")
                self.tokenizer, lm, _ = load_hf(
                    self.model, "AutoModelForCausalLM", self.device, dtype=self.torch.float32
                )
                self.provenance = provenance("transformers", self.model, lm)
                # scoring reads the last position only: skip the LM head elsewhere if supported
                params = inspect.signature(lm.forward).parameters
                keep = next(
                    (n for n in ("logits_to_keep", "num_logits_to_keep") if n in params), None
                )
                self._last_logits_only = {keep: 1} if keep else {}
                self.loads += 1
                self.lm = lm
        return self

    # -- generation (one conversation) ----------------------------------------------------------
    def chat_text(self, messages: Messages) -> str:
        """The chat-templated prompt with the assistant turn opened."""
        self.load()
        return str(
            self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        )

    def prompt_ids(self, messages: Messages) -> Any:
        """Token ids ``(1, L)`` (and mask) of the chat-templated prompt, on the model's device."""
        text = self.chat_text(messages)
        return self.tokenizer(text, return_tensors="pt", add_special_tokens=False).to(
            self.lm.device
        )

    def gen_kwargs(self, max_new_tokens: int, temperature: float) -> dict[str, Any]:
        """``generate()`` arguments: greedy for temperature 0, sampling otherwise."""
        self.load()
        pad = self.tokenizer.pad_token_id  # 0 is a valid id: only None falls back to EOS
        kw: dict[str, Any] = {
            "max_new_tokens": max_new_tokens,
            "pad_token_id": pad if pad is not None else self.tokenizer.eos_token_id,
        }
        if temperature > 0:
            kw.update({"do_sample": True, "temperature": temperature})
        else:  # silence sampling defaults from generation_config under greedy decoding
            kw.update({"do_sample": False, "temperature": None, "top_p": None, "top_k": None})
        return kw

    def stream(
        self, messages: Messages, max_new_tokens: int, temperature: float, stops: Sequence[str]
    ) -> Iterator[str]:
        """Decoded text pieces as they come; decoding ends once a stop string has been
        generated (the pieces are not cut: :class:`rag.generators.StopFilter` does that)."""
        inputs = self.prompt_ids(messages)
        streamer = self.transformers.TextIteratorStreamer(
            self.tokenizer, skip_prompt=True, skip_special_tokens=True
        )
        kwargs = {**inputs, **self.gen_kwargs(max_new_tokens, temperature), "streamer": streamer}
        criteria: list[Any] = []
        if stops:  # end decoding on the model side too, not only in what is shown
            prompt_len = inputs["input_ids"].shape[1]
            criteria.append(StopOnGeneratedText(self.tokenizer, stops, prompt_len))
        cancel = current_cancel()
        if cancel is not None:  # the request's cancellation reaches the token loop
            criteria.append(StopOnCancel(cancel))
        if criteria:
            kwargs["stopping_criteria"] = self.transformers.StoppingCriteriaList(criteria)
        err: list[BaseException] = []

        def run() -> None:
            try:
                with self.torch.inference_mode():
                    self.lm.generate(**kwargs)
            except BaseException as e:  # surfaced to the caller below
                err.append(e)
                streamer.end()

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        # a consumer that stops reading (a stop string shown) leaves the thread to end by itself
        yield from streamer
        thread.join()
        if err:
            raise err[0]

    # -- scoring and batched greedy decoding (rerankers, judges) --------------------------------
    def truncate(self, texts: Sequence[str], max_tokens: int) -> list[str]:
        """Cut each text to at most ``max_tokens`` tokens of this model's tokenizer."""
        if not texts:
            return []
        self.load()
        ids = self.tokenizer(list(texts), add_special_tokens=False)["input_ids"]
        return [
            t if len(i) <= max_tokens else self.tokenizer.decode(i[:max_tokens])
            for t, i in zip(texts, ids, strict=True)
        ]

    def _batch(self, prompts: Sequence[str], prefix: str = "") -> Any:
        """Chat-templated prompts, left-padded: ``input_ids``/``attention_mask`` ``(B, L)``."""
        texts = [self.chat_text([{"role": "user", "content": p}]) + prefix for p in prompts]
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        return self.tokenizer(
            texts,
            return_tensors="pt",
            padding=True,
            padding_side="left",
            add_special_tokens=False,
        ).to(self.lm.device)

    def next_token_logprobs(self, prompts: Sequence[str], token_ids: Sequence[int]) -> np.ndarray:
        """``(B, T)`` log-probabilities of ``token_ids`` as the first assistant token."""
        torch = self.load().torch
        batch = self._batch(prompts)
        mask = batch["attention_mask"]
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        with torch.inference_mode():
            out = self.lm(**batch, position_ids=positions, **self._last_logits_only)
            logits = out.logits[:, -1, :].float()
        logp = torch.log_softmax(logits, dim=-1)[:, list(token_ids)]
        return np.asarray(logp.cpu().numpy())

    def allowed_ids(self, chars: str) -> list[int]:
        """Ids of the tokens made only of ``chars``, plus EOS (one vocabulary scan)."""
        self.load()
        if chars not in self._allowed:
            ok = set(chars)
            ids = [
                i
                for i in range(len(self.tokenizer))
                if (s := self.tokenizer.decode([i])) and set(s) <= ok
            ]
            self._allowed[chars] = sorted({*ids, self.tokenizer.eos_token_id})
        return self._allowed[chars]

    def generate(
        self,
        prompts: Sequence[str],
        max_new_tokens: int,
        allowed_chars: str | None = None,
        prefix: str = "",
    ) -> list[str]:
        """Greedy assistant turns for single-message ``prompts``, each opened with ``prefix``
        (returned as part of the text), optionally restricted to ``allowed_chars`` tokens."""
        torch = self.load().torch
        batch = self._batch(prompts, prefix)  # sets a pad token when the model has none
        kwargs = self.gen_kwargs(max_new_tokens, 0.0)  # greedy
        if allowed_chars is not None:
            allowed = self.allowed_ids(allowed_chars)
            kwargs["logits_processor"] = [allow_only(self.transformers, allowed)]
        with torch.inference_mode():
            out = self.lm.generate(**batch, **kwargs)
        new = out[:, batch["input_ids"].shape[1] :]
        return [prefix + t for t in self.tokenizer.batch_decode(new, skip_special_tokens=True)]
