"""xRAG generator: a frozen causal LM that reads ``<xRAG:...>`` tokens as projected embeddings.

Cheng et al., "xRAG: Extreme Context Compression for Retrieval-augmented Generation with One
Token", NeurIPS 2024 (arXiv:2405.13792). The chat-templated prompt is embedded with the LM's own
input-embedding table, except that every ``<xRAG:...>`` token written by
:class:`rag.compressors.xrag.XRAGCompressor` becomes ONE position holding ``P(e)``, the trained
projector applied to the document embedding (:func:`rag.generators.xrag_projector.splice_embeds`);
decoding then runs from ``inputs_embeds``. Without any token in the prompt it behaves as a plain
:class:`TransformersGenerator` over the same model.

The projector is trained by ``bench/train_xrag.py --out DIR`` (weights stay out of git).

>>> gen = XRAGGenerator(projector="/work/cache/research/xrag-projector", max_new_tokens=8)
>>> gen.generate([{"role": "user", "content": "<xRAG:...> Summarise."}])   # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, ClassVar

from rag.core.errors import ConfigError
from rag.generators.base import Messages, Sampling, check_messages
from rag.generators.transformers import TransformersGenerator
from rag.generators.xrag_projector import load_projector, splice_embeds


class XRAGGenerator(TransformersGenerator):
    """Generate with one soft token per xRAG-compressed document.

    Args:
        projector: folder holding ``projector.safetensors`` + ``projector.json``.
        model, max_new_tokens, temperature, stop, device: as :class:`TransformersGenerator`; the
            model must be the LLM the projector was trained for.
    """

    name: ClassVar[str] = "xrag_generator"
    streams_tokens: ClassVar[bool] = False

    def __init__(
        self,
        projector: str,
        model: str = "smollm2-135m",
        max_new_tokens: int = 256,
        temperature: float = 0.0,
        stop: list[str] | None = None,
        device: str = "auto",
    ) -> None:
        if not isinstance(projector, str) or not projector:
            raise ConfigError(f"projector must be a trained projector folder, got {projector!r}")
        super().__init__(model, max_new_tokens, temperature, stop, device)
        self.projector = projector

    def _load(self) -> None:
        super()._load()
        self.proj, self.manifest = load_projector(self.projector)
        self.proj.to(self.lm.device)
        hidden = self.lm.get_input_embeddings().weight.shape[1]
        if self.proj.d_out != hidden:
            raise ConfigError(
                f"projector {self.projector} outputs {self.proj.d_out}-d vectors but {self.model} "
                f"embeds tokens in {hidden}-d; train a projector for this model"
            )

    def prompt_embeds(self, messages: Messages) -> tuple[Any, int]:
        """``(inputs_embeds (1, L, H), number of xRAG tokens)`` of the chat-templated prompt."""
        self.load()
        text = self.runtime.chat_text(check_messages(messages))
        with self._torch.inference_mode():
            emb, _, n = splice_embeds(self.lm, self.tokenizer, self.proj, text)
        return emb, n

    def prompt_positions(self, messages: Messages) -> int:
        """Input positions the LLM reads for ``messages`` (one per xRAG token)."""
        return int(self.prompt_embeds(messages)[0].shape[1])

    def _stream(self, messages: Messages, sampling: Sampling) -> Iterator[str]:
        """Decode from ``inputs_embeds``; the text comes as one piece."""
        emb, _ = self.prompt_embeds(messages)
        kw = self.runtime.gen_kwargs(sampling.max_new_tokens, sampling.temperature)
        mask = self._torch.ones(emb.shape[:2], dtype=self._torch.long, device=emb.device)
        with self._torch.inference_mode():
            out = self.lm.generate(inputs_embeds=emb, attention_mask=mask, **kw)
        text = self.tokenizer.decode(out[0], skip_special_tokens=True)
        if text:
            yield text
