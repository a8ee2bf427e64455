"""``rag chat``: an interactive terminal chat over an index, with streamed answers and citations.

Without an index it indexes the packaged demo corpus, so it works offline on the embedded
defaults. Lines starting with ``/`` are commands (``/help`` lists them).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from collections.abc import Callable
from typing import Any, TextIO

from rag.app.chat import MODES, ChatEngine, Conversation
from rag.core.errors import RagError
from rag.core.types import Answer

DEFAULT_MODEL = "smollm2-135m"
HELP = """commands:
  /sources   the sources of the last answer (* = cited)
  /query     the query the last answer retrieved with, and its trace
  /history   the conversation so far
  /save FILE save the conversation as JSON      /reset  start over
  /help      this list                          /quit   leave (or Ctrl-D)"""


def add_chat_parser(sub: Any) -> None:
    p = sub.add_parser("chat", help="chat with an index in the terminal (streamed, with citations)")
    p.add_argument("index", nargs="?", default=None, help="index folder (default: the demo corpus)")
    p.add_argument("--mode", choices=MODES, default="condense", help="follow-up handling")
    p.add_argument("--agent", action="store_true", help="let the model call search/fetch tools")
    p.add_argument("--max-steps", type=int, default=4, help="agent: model calls at most")
    p.add_argument("--retriever", default="hybrid", help="demo index only: bm25|dense|hybrid")
    p.add_argument("--history-tokens", type=int, default=768)
    p.add_argument("--load", default=None, help="continue a conversation saved with /save")
    p.add_argument("-k", type=int, default=3, help="sources per answer")
    p.add_argument("--model", default=DEFAULT_MODEL, help="generator: short name, HF id or path")
    p.add_argument("--max-new-tokens", type=int, default=96)
    p.add_argument(
        "--base-url",
        default=None,
        help="answer with an OpenAI-compatible server (e.g. http://127.0.0.1:8000/v1)",
    )
    p.add_argument("--api-key-env", default=None, help="--base-url: env variable with the key")
    p.add_argument(
        "--native-tools",
        action="store_true",
        help="--base-url: the server returns tool calls; --agent sends its tools natively",
    )
    p.set_defaults(func=cmd_chat)


def _pipeline(args: argparse.Namespace) -> Any:
    from rag.app.demo import build_retriever, demo_corpus_path
    from rag.index.persist import read_documents
    from rag.pipeline import Pipeline

    if args.index:
        return Pipeline.open(args.index)
    out = os.path.join(tempfile.gettempdir(), f"ragnodes-chat-{args.retriever}")
    docs = read_documents(demo_corpus_path())
    Pipeline(retriever=build_retriever(args.retriever, progress=False)).index(docs).save(out)
    print(f"indexed the packaged demo corpus ({len(docs)} notes) into {out}")
    return Pipeline.open(out)


def cmd_chat(args: argparse.Namespace, generator: Any = None) -> int:
    """Run the chat; ``generator`` replaces the ``--model`` generator (tests script it)."""
    from rag.generators import TransformersGenerator

    pipe = _pipeline(args)
    pipe.k = args.k
    if generator is None and getattr(args, "base_url", None):
        from rag.generators import OpenAICompatibleGenerator

        generator = OpenAICompatibleGenerator(
            base_url=args.base_url,
            model=None if args.model == DEFAULT_MODEL else args.model,
            max_new_tokens=args.max_new_tokens,
            api_key_env=args.api_key_env,
            native_tools=args.native_tools,
        )
    if generator is None:
        generator = TransformersGenerator(model=args.model, max_new_tokens=args.max_new_tokens)
    agent = None
    if args.agent:
        from rag.app.agent import Agent

        agent = Agent(pipe, generator, max_steps=args.max_steps, k=args.k)
    conv = Conversation.load(args.load) if args.load else None
    engine = ChatEngine(pipe, generator, args.mode, args.history_tokens, conv, agent=agent)
    return repl(engine)


def _show_sources(answer: Answer | None, out: TextIO) -> None:
    if answer is None:
        print("no answer yet", file=out)
        return
    cited = set(answer.cited_ids)
    for n, h in enumerate(answer.contexts, 1):
        mark = "*" if h.id in cited else " "
        d = h.document
        print(f"{mark}[{n}] {h.id}: {d.title + ' - ' if d.title else ''}{d.text[:160]}", file=out)


def _show_query(answer: Answer | None, out: TextIO) -> None:
    if answer is None:
        print("no answer yet", file=out)
        return
    for s in answer.trace:
        ids = f" -> {', '.join(s.document_ids)}" if s.document_ids else ""
        q = f" {s.query!r}" if s.query else ""
        detail = f" ({s.detail})" if s.detail else ""
        print(f"  {s.action}{q}{ids}{detail}", file=out)


def _command(line: str, engine: ChatEngine, last: Answer | None, out: TextIO) -> bool:
    """Run a ``/command``; return False to quit."""
    cmd, _, arg = line[1:].strip().partition(" ")
    if cmd in ("quit", "exit", "q"):
        return False
    if cmd == "sources":
        _show_sources(last, out)
    elif cmd == "query":
        _show_query(last, out)
    elif cmd == "history":
        for n, t in enumerate(engine.conversation.turns, 1):
            print(f"{n}. you: {t.question}\n   rag: {t.answer}\n   (query: {t.query})", file=out)
    elif cmd == "save" and arg.strip():
        print(f"saved to {engine.conversation.save(arg.strip())}", file=out)
    elif cmd == "reset":
        engine.reset()
        print("conversation cleared", file=out)
    else:
        print(HELP, file=out)
    return True


def _turn(engine: ChatEngine, line: str, out: TextIO) -> Answer | None:
    answer = None
    print("rag> ", end="", flush=True, file=out)
    for item in engine.stream(line):
        if isinstance(item, Answer):
            answer = item
        else:
            print(item, end="", flush=True, file=out)
    print(file=out)
    if answer is not None:
        # where each cited text sits (path:page, path#heading, the path), as `rag ask` prints it
        cites = "  ".join(f"[{c.marker}] {c.locator}" for c in answer.citations)
        print(f"     cited: {cites or 'nothing'}  (/sources, /query)", file=out)
    return answer


def repl(engine: ChatEngine, read: Callable[[str], str] = input, out: TextIO = sys.stdout) -> int:
    """Read questions until ``/quit`` or end of input; answers stream to ``out``."""
    print("chat over the index; /help for commands, /quit to leave", file=out)
    last: Answer | None = None
    while True:
        try:
            line = read("you> ").strip()
        except (EOFError, KeyboardInterrupt):
            print(file=out)
            return 0
        if not line:
            continue
        if line.startswith("/"):
            if not _command(line, engine, last, out):
                return 0
            continue
        try:
            last = _turn(engine, line, out) or last
        except RagError as e:
            print(f"\nerror: {e}", file=out)
