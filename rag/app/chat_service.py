"""Conversations by id, for an HTTP ``/chat`` endpoint (the server mounts this; it holds no HTTP).

One :class:`~rag.app.chat.ChatEngine` per conversation id, sharing the pipeline and the generator;
the oldest conversation is dropped past ``max_conversations``. Responses are JSON-safe dicts.

Mounting it in a FastAPI app (``rag/app/server.py``)::

    sessions = ChatSessions(pipeline)

    @app.post("/chat")
    def chat(body: ChatRequest) -> dict:       # {"message", "conversation_id"?, "agent"?}
        return sessions.chat(body.message, body.conversation_id, agent=body.agent)

    @app.get("/chat/{conversation_id}")
    def history(conversation_id: str) -> dict:
        return sessions.get(conversation_id).model_dump()

For streaming, iterate :meth:`ChatSessions.stream` (``delta`` events, then one ``answer`` event)
into server-sent events.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterator
from typing import Any

from rag.app.chat import MODES, ChatEngine, Conversation
from rag.core.errors import ConfigError, NotFoundError
from rag.core.types import Answer


def answer_json(conversation_id: str, answer: Answer) -> dict[str, Any]:
    """The response body of one chat turn."""
    return {
        "conversation_id": conversation_id,
        "answer": answer.text,
        "query": next((s.query for s in answer.trace if s.action == "condense"), answer.query.text),
        "citations": [c.model_dump() for c in answer.citations],  # rag.core.types.Citation
        "sources": [
            {"n": n, "id": h.id, "title": h.document.title}
            for n, h in enumerate(answer.contexts, 1)
        ],
        "trace": [s.model_dump() for s in answer.trace],
    }


class ChatSessions:
    """Chat engines by conversation id.

    Args:
        pipeline: shared by every conversation (its generator answers unless ``generator``).
        mode: follow-up handling, one of :data:`rag.app.chat.MODES`.
        agent_steps: ``max_steps`` of the :class:`~rag.app.agent.Agent` used when a request asks for
            the agent.
    """

    def __init__(
        self,
        pipeline: Any,
        generator: Any = None,
        mode: str = "condense",
        history_tokens: int = 768,
        max_conversations: int = 1000,
        agent_steps: int = 4,
    ) -> None:
        if mode not in MODES:
            raise ConfigError(f"mode must be one of {MODES}, got {mode!r}")
        if max_conversations < 1:
            raise ConfigError(f"max_conversations must be >= 1, got {max_conversations}")
        self.pipeline, self.generator, self.mode = pipeline, generator, mode
        self.history_tokens, self.max_conversations = history_tokens, max_conversations
        self.agent_steps = agent_steps
        self._engines: OrderedDict[str, tuple[ChatEngine, threading.Lock]] = OrderedDict()
        self._lock = threading.Lock()

    def _engine(self, conversation_id: str | None) -> tuple[ChatEngine, threading.Lock]:
        with self._lock:
            if conversation_id is not None and conversation_id in self._engines:
                self._engines.move_to_end(conversation_id)
                return self._engines[conversation_id]
            conv = Conversation(id=conversation_id) if conversation_id else Conversation()
            engine = ChatEngine(self.pipeline, self.generator, self.mode, self.history_tokens, conv)
            self._engines[conv.id] = (engine, threading.Lock())
            while len(self._engines) > self.max_conversations:
                self._engines.popitem(last=False)
            return self._engines[conv.id]

    def stream(
        self, message: str, conversation_id: str | None = None, agent: bool = False
    ) -> Iterator[dict[str, Any]]:
        """``{"type": "delta", "text"}`` events, then ``{"type": "answer", **answer_json}``."""
        engine, lock = self._engine(conversation_id)
        with lock:
            if agent and engine.agent is None:
                from rag.app.agent import Agent

                engine.agent = Agent(self.pipeline, engine.generator, max_steps=self.agent_steps)
            elif not agent:
                engine.agent = None
            for item in engine.stream(message):
                if isinstance(item, Answer):
                    yield {"type": "answer", **answer_json(engine.conversation.id, item)}
                else:
                    yield {"type": "delta", "text": item}

    def chat(
        self, message: str, conversation_id: str | None = None, agent: bool = False
    ) -> dict[str, Any]:
        """One turn; the body carries the conversation id to send with the next message."""
        *_, last = self.stream(message, conversation_id, agent)
        return {k: v for k, v in last.items() if k != "type"}

    def get(self, conversation_id: str) -> Conversation:
        with self._lock:
            if conversation_id not in self._engines:
                raise NotFoundError(
                    f"no conversation with id {conversation_id!r}; conversations live in memory: "
                    "send a message without conversation_id to start one"
                )
            return self._engines[conversation_id][0].conversation

    def delete(self, conversation_id: str) -> bool:
        with self._lock:
            return self._engines.pop(conversation_id, None) is not None

