"""``rag serve`` and ``rag mcp``: argument parsing only here, so ``rag --help`` needs no extra."""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Any

from rag.core.errors import ConfigError

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
    g = p.add_argument_group("limits (each violation is a 4xx naming the limit; 0: none)")
    g.add_argument("--max-messages", type=int, default=256, help="messages per request (422)")
    g.add_argument("--max-prompt-tokens", type=int, default=8192,
                   help="prompt tokens per request (422)")
    g.add_argument("--body-timeout", type=float, default=10.0,
                   help="seconds to receive a request body, then 408 and close (slowloris)")
    g.add_argument("--request-timeout", type=float, default=60.0,
                   help="seconds until a response starts, then 408")
    g.add_argument("--generation-timeout", type=float, default=120.0,
                   help="seconds to generate an answer, then 408 (a stream: an error event)")
    g.add_argument("--max-concurrent", default="search=64,generate=4", metavar="STAGE=N,...",
                   help="requests in flight per stage, more get 429 (default: %(default)s)")
    g = p.add_argument_group("lifecycle")
    g.add_argument("--drain-timeout", type=float, default=10.0,
                   help="on SIGTERM, seconds to finish in-flight requests before cancelling them")
    g.add_argument("--worker-threads", type=int, default=0,
                   help="threads for CPU-bound stages (0: min(8, cpus + 2))")
    g.add_argument("--search-batch", type=int, default=32, metavar="N",
                   help="concurrent /search requests run as one batch of up to N queries "
                        "(dynamic batching, no waiting; 1: each alone; default: %(default)s)")


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


def _limits(args: argparse.Namespace) -> Any:
    from rag.app.server_limits import Limits, parse_concurrency

    def opt(v: Any) -> Any:
        return v if v else None  # 0: no limit

    return Limits(
        max_messages=opt(args.max_messages),
        max_prompt_tokens=opt(args.max_prompt_tokens),
        body_timeout=opt(args.body_timeout),
        request_timeout=opt(args.request_timeout),
        generation_timeout=opt(args.generation_timeout),
        max_concurrent=parse_concurrency(args.max_concurrent),
    )


def cmd_serve(args: argparse.Namespace) -> int:
    """Open the index and serve it with uvicorn: live at once, ready (one log line) once the
    models are loaded; SIGTERM stops accepting, drains for ``--drain-timeout`` s, then cancels."""
    import time

    t0 = time.monotonic()
    from rag.core.extras import require

    uvicorn = require("uvicorn", extra="serve", feature="rag serve")
    from rag.app.server import create_app
    from rag.core import tracing
    from rag.core.concurrency import set_pool_size

    if args.no_auth and args.host not in LOOPBACK:
        raise ConfigError(f"--no-auth is only allowed on a loopback host, got --host {args.host}")
    if args.drain_timeout < 0:
        raise ConfigError(f"--drain-timeout must be >= 0, got {args.drain_timeout}")
    limits = _limits(args)
    log = logging.getLogger("ragnodes")
    if not any(not isinstance(h, logging.NullHandler) for h in log.handlers):
        # the ready line and shutdown notes, on stderr
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)
    tracing.configure()  # OTEL_TRACES_EXPORTER / OTEL_EXPORTER_OTLP_ENDPOINT, if set
    if args.worker_threads:
        set_pool_size(args.worker_threads)
    pipe = _open(args)
    host = f"[{args.host}]" if ":" in args.host else args.host
    app = create_app(
        pipe,
        auth=not args.no_auth,
        max_body_bytes=args.max_body_bytes,
        cors_origins=args.cors_origin,
        read_only=args.read_only,
        # an index in the layout before rag.index is re-saved once, so that writes are committed
        save_to=args.index if pipe.folder is None and not args.read_only else None,
        limits=limits,
        load="background",  # /health/live now, /health/ready and the ready line when loaded
        address=f"http://{host}:{args.port}",
        started=t0,
        search_batch=args.search_batch,
    )
    config = uvicorn.Config(
        app, host=args.host, port=args.port, log_level="warning", access_log=False,
        timeout_graceful_shutdown=args.drain_timeout,
    )
    try:
        uvicorn.Server(config).run()
    finally:
        tracing.shutdown()
    return 0


def cmd_mcp(args: argparse.Namespace) -> int:
    """Serve the index's tools over stdio; logs go to stderr, stdout carries only the protocol."""
    from rag.app.integrations.mcp import build_mcp_server

    logging.basicConfig(stream=sys.stderr, level=logging.WARNING)
    build_mcp_server(_open(args)).run("stdio")
    return 0
