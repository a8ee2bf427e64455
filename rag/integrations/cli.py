"""``rag serve`` and ``rag mcp``: argument parsing only here, so ``rag --help`` needs no extra."""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Any

from rag.errors import ConfigError

LOOPBACK = ("127.0.0.1", "localhost", "::1")


def add_serving_parsers(sub: Any) -> None:
    p = sub.add_parser(
        "serve", help="serve an index over HTTP: /search, /ask (SSE), /documents, /v1 (OpenAI)"
    )
    add_serve_args(p)
    p.set_defaults(func=cmd_serve)
    p = sub.add_parser("mcp", help="serve an index's tools and documents over MCP (stdio)")
    add_mcp_args(p)
    p.set_defaults(func=cmd_mcp)


def _add_index_and_model(p: argparse.ArgumentParser, model: str | None) -> None:
    p.add_argument("index", help="an index folder written by `rag index`")
    p.add_argument("--model", default=model, help="generator for ask ('none': search only)")
    p.add_argument("--max-new-tokens", type=int, default=160)


def add_serve_args(p: argparse.ArgumentParser) -> None:
    _add_index_and_model(p, "smollm2-135m")
    p.add_argument("--host", default="127.0.0.1", help="interface (default: loopback only)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--no-auth", action="store_true", help="serve without API keys (loopback)")
    p.add_argument("--max-body-bytes", type=int, default=1_000_000)
    p.add_argument("--cors-origin", action="append", default=[], help="allow this CORS origin")
    p.add_argument(
        "--read-only", action="store_true",
        help="refuse /documents changes (by default they are committed to the index folder)",
    )
    p.add_argument("--save", action="store_true", help=argparse.SUPPRESS)  # the default now


def add_mcp_args(p: argparse.ArgumentParser) -> None:
    # the ask tool is offered with the packaged generator too; it loads on the first ask
    _add_index_and_model(p, "smollm2-135m")


def _open(args: argparse.Namespace) -> Any:
    from rag.pipeline import Pipeline

    pipe = Pipeline.open(args.index, read_only=getattr(args, "read_only", False))
    if pipe.generator is None and str(args.model).lower() != "none":
        from rag.generators import TransformersGenerator

        pipe.generator = TransformersGenerator(model=args.model, max_new_tokens=args.max_new_tokens)
    return pipe


def cmd_serve(args: argparse.Namespace) -> int:
    """Open the index and serve it with uvicorn (one process; endpoints run in its threads)."""
    from rag.extras import require

    uvicorn = require("uvicorn", extra="serve", feature="rag serve")
    from rag.server import create_app

    if args.no_auth and args.host not in LOOPBACK:
        raise ConfigError(f"--no-auth is only allowed on a loopback host, got --host {args.host}")
    pipe = _open(args)
    if pipe.generator is not None:  # load once now, not by the first concurrent /ask requests
        pipe.generator.load()
    app = create_app(
        pipe,
        auth=not args.no_auth,
        max_body_bytes=args.max_body_bytes,
        cors_origins=args.cors_origin,
        read_only=args.read_only,
        # an index in the layout before rag.index is re-saved once, so that writes are committed
        save_to=args.index if pipe.folder is None and not args.read_only else None,
    )
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", access_log=False)
    return 0


def cmd_mcp(args: argparse.Namespace) -> int:
    """Serve the index's tools over stdio; logs go to stderr, stdout carries only the protocol."""
    from rag.integrations.mcp import build_mcp_server

    logging.basicConfig(stream=sys.stderr, level=logging.WARNING)
    build_mcp_server(_open(args)).run("stdio")
    return 0
