"""ragnodes' models inside LangChain: an encoder as ``Embeddings``, a generator as a chat model.

* :class:`RagEmbeddings` -- a :class:`~rag.core.encoders.TransformerEncoder` (or the encoder of a
  dense or hybrid index) as ``langchain_core.embeddings.Embeddings``: ``embed_query`` encodes the
  query side, ``embed_documents`` the document side (an asymmetric encoder's prefixes apply).
* :class:`RagChatModel` -- any ragnodes generator (transformers, vLLM, an OpenAI-compatible
  server) as a ``BaseChatModel``: ``invoke`` / ``stream`` / ``ainvoke``; ``bind_tools`` with
  LangChain tools. A generator with native tool calling gets the tools as they are; any other is
  prompted to answer with one JSON object (:mod:`rag.app.tool_turn`), so SmolLM2 can drive an agent.

>>> chat = RagChatModel(generator=TransformersGenerator(max_new_tokens=32))  # doctest: +SKIP
>>> chat.invoke("Say hi.").content                                           # doctest: +SKIP
>>> chat.bind_tools(RagTools(pipeline).as_langchain()).invoke("Moons of Mars?").tool_calls
...                                                                          # doctest: +SKIP

Needs the ``langchain`` extra (``pip install "ragnodes[langchain]"``).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from pydantic import ConfigDict, Field

from rag.app.tool_turn import tool_turn
from rag.core.errors import ConfigError
from rag.core.extras import require
from rag.ingest.frameworks import find_encoder

try:
    from langchain_core.callbacks import CallbackManagerForLLMRun
    from langchain_core.embeddings import Embeddings
    from langchain_core.language_models import BaseChatModel
    from langchain_core.messages import (
        AIMessage,
        AIMessageChunk,
        BaseMessage,
        ChatMessage,
        HumanMessage,
        SystemMessage,
        ToolMessage,
    )
    from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
    from langchain_core.utils.function_calling import convert_to_openai_tool
except ImportError:
    require("langchain_core", extra="langchain", feature="the LangChain models")
    raise


def as_encoder(node: Any) -> Any:
    """A text encoder from an encoder, a dense/hybrid retriever or a pipeline."""
    enc = find_encoder(node)
    if enc is None:
        raise ConfigError(
            f"expected a ragnodes TransformerEncoder or a dense/hybrid index, "
            f"got {type(node).__name__}"
        )
    return enc


class RagEmbeddings(Embeddings):
    """A ragnodes encoder behind LangChain's ``Embeddings`` (vectors as lists of floats).

    Args:
        encoder: a ``TransformerEncoder``, or a dense/hybrid retriever or pipeline (its encoder).
    """

    def __init__(self, encoder: Any) -> None:
        self.encoder = as_encoder(encoder)

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        if not texts:
            return []
        return self.encoder.encode(list(texts), kind="document").tolist()

    def embed_query(self, text: str) -> list[float]:
        return self.encoder.encode([text], kind="query")[0].tolist()


def to_openai_messages(messages: Sequence[BaseMessage]) -> list[dict[str, Any]]:
    """LangChain messages as OpenAI chat messages (tool calls and results included)."""
    out: list[dict[str, Any]] = []
    for m in messages:
        if isinstance(m, SystemMessage):
            out.append({"role": "system", "content": m.text})
        elif isinstance(m, HumanMessage):
            out.append({"role": "user", "content": m.text})
        elif isinstance(m, AIMessage):
            msg: dict[str, Any] = {"role": "assistant", "content": m.text}
            if m.tool_calls:
                msg["tool_calls"] = [
                    {
                        "id": c.get("id") or f"call_{i}",
                        "type": "function",
                        "function": {"name": c["name"], "arguments": json.dumps(c["args"])},
                    }
                    for i, c in enumerate(m.tool_calls)
                ]
            out.append(msg)
        elif isinstance(m, ToolMessage):
            out.append({"role": "tool", "tool_call_id": m.tool_call_id, "content": m.text})
        elif isinstance(m, ChatMessage):
            out.append({"role": m.role, "content": m.text})
        else:
            raise ConfigError(f"unsupported message type {type(m).__name__}")
    return out


def _lc_tool_calls(calls: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for c in calls:
        fn = c.get("function") or {}
        args = fn.get("arguments") or {}
        if isinstance(args, str):
            try:
                args = json.loads(args) if args.strip() else {}
            except json.JSONDecodeError:
                args = {}
        out.append(
            {"name": fn.get("name", ""), "args": args, "id": c.get("id"), "type": "tool_call"}
        )
    return out


class RagChatModel(BaseChatModel):
    """A ragnodes generator as a LangChain chat model.

    Args:
        generator: a ragnodes generator (``generate`` / ``stream`` over chat messages).
        max_new_tokens: per-call budget (``None``: the generator's default).
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    generator: Any = Field(description="a ragnodes generator", exclude=True)
    max_new_tokens: int | None = Field(None, ge=1)

    def __init__(self, **data: Any) -> None:
        gen = data.get("generator")
        if not (
            callable(getattr(gen, "generate", None)) and callable(getattr(gen, "stream", None))
        ):
            raise ConfigError(
                f"expected a ragnodes generator (generate/stream), got {type(gen).__name__}"
            )
        super().__init__(**data)

    @property
    def _llm_type(self) -> str:
        return "ragnodes"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"model": str(getattr(self.generator, "model", "")), "ragnodes": True}

    def _kw(self, stop: list[str] | None) -> dict[str, Any]:
        kw: dict[str, Any] = {}
        if self.max_new_tokens is not None:
            kw["max_new_tokens"] = self.max_new_tokens
        if stop:
            kw["stop"] = list(stop)
        return kw

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        msgs = to_openai_messages(messages)
        tools = kwargs.get("tools")
        if tools and kwargs.get("tool_choice") != "none":
            text, calls, finish = tool_turn(self.generator, msgs, tools, self.max_new_tokens)
            msg = AIMessage(content=text, tool_calls=_lc_tool_calls(calls))
            info = {"finish_reason": finish}
        else:
            msg = AIMessage(content=self.generator.generate(msgs, **self._kw(stop)))
            info = {"finish_reason": "stop"}
        return ChatResult(generations=[ChatGeneration(message=msg, generation_info=info)])

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        if kwargs.get("tools") and kwargs.get("tool_choice") != "none":
            result = self._generate(messages, stop, run_manager, **kwargs)  # one piece
            m = result.generations[0].message
            yield ChatGenerationChunk(
                message=AIMessageChunk(
                    content=m.content,
                    tool_call_chunks=[
                        {
                            "name": c["name"],
                            "args": json.dumps(c["args"]),
                            "id": c["id"],
                            "index": i,
                        }
                        for i, c in enumerate(m.tool_calls)
                    ],
                )
            )
            return
        for piece in self.generator.stream(to_openai_messages(messages), **self._kw(stop)):
            chunk = ChatGenerationChunk(message=AIMessageChunk(content=piece))
            if run_manager is not None:
                run_manager.on_llm_new_token(piece, chunk=chunk)
            yield chunk

    def bind_tools(
        self,
        tools: Sequence[dict[str, Any] | type | Callable | Any],
        *,
        tool_choice: str | None = None,
        **kwargs: Any,
    ) -> Any:
        """Offer ``tools`` (LangChain tools, functions, pydantic models or OpenAI schemas); the
        reply's ``tool_calls`` name them. ``tool_choice="none"`` turns them off."""
        formatted = [convert_to_openai_tool(t) for t in tools]
        if tool_choice is not None:
            kwargs["tool_choice"] = tool_choice
        return super().bind(tools=formatted, **kwargs)
