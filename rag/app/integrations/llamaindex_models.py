"""ragnodes' models inside LlamaIndex: an encoder as ``BaseEmbedding``, a generator as an ``LLM``.

* :class:`RagEmbedding` -- a :class:`~rag.core.encoders.TransformerEncoder` (or the encoder of a
  dense or hybrid index) as ``llama_index.core`` ``BaseEmbedding`` (query side for queries, document
  side for texts); ``Settings.embed_model = RagEmbedding(encoder)`` lets a ``VectorStoreIndex``
  embed with ragnodes.
* :class:`RagLLM` -- any ragnodes generator as a ``CustomLLM``: ``chat`` / ``stream_chat`` send the
  messages to the generator as chat messages (its chat template applies), ``complete`` /
  ``stream_complete`` send the prompt as one user message; async variants run them in a thread.

>>> Settings.llm = RagLLM(generator=TransformersGenerator(max_new_tokens=64))  # doctest: +SKIP
>>> RetrieverQueryEngine.from_args(LlamaIndexRetriever(bm25)).query("...")    # doctest: +SKIP

Needs the ``llamaindex`` extra (``pip install "ragnodes[llamaindex]"``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from pydantic import Field, PrivateAttr

from rag.core.errors import ConfigError
from rag.core.extras import require
from rag.ingest.frameworks import find_encoder

try:
    from llama_index.core.base.embeddings.base import BaseEmbedding
    from llama_index.core.base.llms.types import (
        ChatMessage,
        ChatResponse,
        ChatResponseGen,
        CompletionResponse,
        CompletionResponseGen,
        LLMMetadata,
        MessageRole,
    )
    from llama_index.core.llms.callbacks import llm_chat_callback, llm_completion_callback
    from llama_index.core.llms.custom import CustomLLM
except ImportError:
    require("llama_index.core", extra="llamaindex", feature="the LlamaIndex models")
    raise


class RagEmbedding(BaseEmbedding):
    """A ragnodes encoder behind LlamaIndex's ``BaseEmbedding``.

    Args:
        encoder: a ``TransformerEncoder``, or a dense/hybrid retriever or pipeline (its encoder).
    """

    _encoder: Any = PrivateAttr()

    def __init__(self, encoder: Any, **kwargs: Any) -> None:
        enc = find_encoder(encoder)
        if enc is None:
            raise ConfigError(
                f"expected a ragnodes TransformerEncoder or a dense/hybrid index, "
                f"got {type(encoder).__name__}"
            )
        kwargs.setdefault("model_name", str(enc.model))
        super().__init__(**kwargs)
        self._encoder = enc

    @classmethod
    def class_name(cls) -> str:
        return "RagnodesEmbedding"

    def _get_query_embedding(self, query: str) -> list[float]:
        return self._encoder.encode([query], kind="query")[0].tolist()

    async def _aget_query_embedding(self, query: str) -> list[float]:
        return await asyncio.to_thread(self._get_query_embedding, query)

    def _get_text_embedding(self, text: str) -> list[float]:
        return self._encoder.encode([text], kind="document")[0].tolist()

    def _get_text_embeddings(self, texts: list[str]) -> list[list[float]]:
        return self._encoder.encode(list(texts), kind="document").tolist()


def _messages(messages: Sequence[ChatMessage]) -> list[dict[str, str]]:
    roles = {MessageRole.SYSTEM: "system", MessageRole.USER: "user"}
    return [
        {
            "role": roles.get(m.role, str(getattr(m.role, "value", m.role))),
            "content": m.content or "",
        }
        for m in messages
    ]


class RagLLM(CustomLLM):
    """A ragnodes generator behind LlamaIndex's ``LLM`` interface (chat and completion).

    Args:
        generator: a ragnodes generator (``generate`` / ``stream`` over chat messages).
        max_new_tokens: per-call budget (``None``: the generator's default).
        context_window: what LlamaIndex's prompt helper may fill (SmolLM2: 8192 tokens).
    """

    generator: Any = Field(description="a ragnodes generator", exclude=True)
    max_new_tokens: int | None = Field(None, ge=1)
    context_window: int = Field(8192, ge=1)

    def __init__(self, **data: Any) -> None:
        gen = data.get("generator")
        if not (
            callable(getattr(gen, "generate", None)) and callable(getattr(gen, "stream", None))
        ):
            raise ConfigError(
                f"expected a ragnodes generator (generate/stream), got {type(gen).__name__}"
            )
        super().__init__(**data)

    @classmethod
    def class_name(cls) -> str:
        return "RagnodesLLM"

    @property
    def metadata(self) -> LLMMetadata:
        return LLMMetadata(
            context_window=self.context_window,
            num_output=self.max_new_tokens or getattr(self.generator, "max_new_tokens", 256),
            is_chat_model=True,
            model_name=str(getattr(self.generator, "model", "ragnodes")),
        )

    def _kw(self) -> dict[str, Any]:
        return {"max_new_tokens": self.max_new_tokens} if self.max_new_tokens else {}

    @llm_chat_callback()
    def chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        text = self.generator.generate(_messages(messages), **self._kw())
        return ChatResponse(message=ChatMessage(role=MessageRole.ASSISTANT, content=text))

    @llm_chat_callback()
    def stream_chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponseGen:
        def gen() -> ChatResponseGen:
            text = ""
            for piece in self.generator.stream(_messages(messages), **self._kw()):
                text += piece
                yield ChatResponse(
                    message=ChatMessage(role=MessageRole.ASSISTANT, content=text), delta=piece
                )

        return gen()

    @llm_completion_callback()
    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        text = self.generator.generate([{"role": "user", "content": prompt}], **self._kw())
        return CompletionResponse(text=text)

    @llm_completion_callback()
    def stream_complete(
        self, prompt: str, formatted: bool = False, **kwargs: Any
    ) -> CompletionResponseGen:
        def gen() -> CompletionResponseGen:
            text = ""
            for piece in self.generator.stream([{"role": "user", "content": prompt}], **self._kw()):
                text += piece
                yield CompletionResponse(text=text, delta=piece)

        return gen()
