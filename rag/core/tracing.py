"""OpenTelemetry spans for every pipeline stage, configured by the standard ``OTEL_*`` variables.

One span per stage, named ``{stage} {node}``: ``retrieve bm25`` (one per child of a hybrid, and
``fuse hybrid`` for their combination), ``rerank cross_encoder``, ``compress ...``, and the
generation as GenAI's ``chat {model}``, under a ``search`` or ``ask`` span. Attributes follow the
OpenTelemetry GenAI semantic conventions (``gen_ai.operation.name``, ``gen_ai.request.model``,
``gen_ai.request.max_tokens``, ``gen_ai.usage.input_tokens`` / ``output_tokens``) plus ``rag.k``,
``rag.candidates`` (hits a stage returned) and ``rag.node``; Phoenix reads
``openinference.span.kind``. No document or prompt text is recorded unless
``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=true`` (then the query and the answer).

Only ``opentelemetry-api`` is a core dependency: without a configured SDK every call here is a
check of one global and returns a shared no-op span. ``rag serve`` calls :func:`configure`, which
reads the environment:

* ``OTEL_TRACES_EXPORTER=console`` prints each span as JSON on stdout;
* ``OTEL_EXPORTER_OTLP_ENDPOINT=http://host:4318`` (or ``OTEL_TRACES_EXPORTER=otlp``) sends them
  over OTLP/HTTP (``opentelemetry-exporter-otlp-proto-http``; OTLP/gRPC when only that exporter
  is installed); ``OTEL_SERVICE_NAME`` names the service (default ``ragnodes``).

Both need the ``otel`` extra (``pip install "ragnodes[otel]"``). An application that sets its own
``TracerProvider`` gets ragnodes' spans in it with no call here. docs/tracing.md shows Jaeger,
Phoenix and Langfuse.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import INVALID_SPAN, Span, Status, StatusCode

logger = logging.getLogger("ragnodes.tracing")

CAPTURE_ENV = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"
_provider: Any = None  # a provider given to use(), ahead of the global one (tests, embedding apps)


def use(provider: Any) -> None:
    """Send ragnodes' spans to ``provider`` (``None``: back to the global provider)."""
    global _provider
    _provider = provider


def enabled() -> bool:
    """Whether spans are recorded: a provider was given to :func:`use` or set globally."""
    if _provider is not None:
        return True
    return not isinstance(
        trace.get_tracer_provider(), (trace.ProxyTracerProvider, trace.NoOpTracerProvider)
    )


def capture_content() -> bool:
    return os.environ.get(CAPTURE_ENV, "").strip().lower() in ("1", "true", "yes")


def _tracer() -> trace.Tracer:
    provider = _provider if _provider is not None else trace.get_tracer_provider()
    return provider.get_tracer("ragnodes")


def start(name: str, attributes: dict[str, Any] | None = None, parent: Span | None = None) -> Span:
    """A span that is not made current (safe across ``yield``): end it with :func:`finish`.
    Its parent is ``parent``, else the current span."""
    if not enabled():
        return INVALID_SPAN
    ctx = trace.set_span_in_context(parent) if parent is not None else None
    return _tracer().start_span(name, context=ctx, attributes=_clean(attributes))


def finish(span: Span, error: BaseException | None = None) -> None:
    if span is INVALID_SPAN:
        return
    if error is not None:
        span.set_status(Status(StatusCode.ERROR, type(error).__name__))
        span.set_attribute("error.type", type(error).__name__)
    span.end()


@contextmanager
def activate(span: Span) -> Iterator[Span]:
    """Make ``span`` current inside the block (no ``yield`` of a generator inside it)."""
    if span is INVALID_SPAN:
        yield span
        return
    token = otel_context.attach(trace.set_span_in_context(span))
    try:
        yield span
    finally:
        otel_context.detach(token)


@contextmanager
def span(name: str, attributes: dict[str, Any] | None = None) -> Iterator[Span]:
    """A current span around a block of plain code (errors are recorded on it)."""
    if not enabled():
        yield INVALID_SPAN
        return
    s = _tracer().start_span(name, attributes=_clean(attributes))
    token = otel_context.attach(trace.set_span_in_context(s))
    try:
        yield s
    except BaseException as e:
        finish(s, e)
        raise
    else:
        s.end()
    finally:
        otel_context.detach(token)


def _clean(attributes: dict[str, Any] | None) -> dict[str, Any] | None:
    return {k: v for k, v in (attributes or {}).items() if v is not None} or None


# -- the stages -----------------------------------------------------------------------------------
_KIND = {"retrieve": "RETRIEVER", "fuse": "RETRIEVER", "rerank": "RERANKER",
         "compress": "RERANKER", "search": "CHAIN", "ask": "CHAIN"}


def stage(kind: str, node: Any, k: int | None = None, n_queries: int = 1) -> Any:
    """The span of one ranking stage (``retrieve``, ``fuse``, ``rerank``, ``compress``)."""
    name = str(getattr(node, "name", "") or type(node).__name__)
    return span(
        f"{kind} {name}",
        {"rag.stage": kind, "rag.node": name, "rag.k": k, "rag.queries": n_queries,
         "openinference.span.kind": _KIND.get(kind, "CHAIN")},
    )  # a context manager: ``with stage(...) as s``


def stage_span_after(
    kind: str, node: Any, start_ns: int | None, k: int | None, rankings: Sequence[Any]
) -> None:
    """A stage span that began at ``start_ns`` (``time.time_ns()``) and ends now: a composite
    retriever's ``fuse``, which starts when its children are done (no span when ``None``)."""
    if start_ns is None or not enabled():
        return
    name = str(getattr(node, "name", "") or type(node).__name__)
    s = _tracer().start_span(
        f"{kind} {name}",
        attributes={"rag.stage": kind, "rag.node": name, "rag.k": k,
                    "openinference.span.kind": _KIND.get(kind, "CHAIN")},
        start_time=start_ns,
    )
    candidates(s, rankings)
    s.end()


def candidates(s: Span, rankings: Sequence[Any]) -> None:
    """Record how many hits a stage returned (summed over the batch)."""
    if s is not INVALID_SPAN:
        s.set_attribute("rag.candidates", sum(len(r) for r in rankings))  # builds no hits


def query_text(s: Span, text: str) -> None:
    if s is not INVALID_SPAN and capture_content():
        s.set_attribute("rag.query", text)


def generation(gen: Any, max_new_tokens: int | None, parent: Span | None = None) -> Span:
    """GenAI's ``chat {model}`` span of one generation (not current: it spans ``yield`` s)."""
    if not enabled():
        return INVALID_SPAN
    model = str(getattr(gen, "model", None) or getattr(gen, "name", "") or type(gen).__name__)
    n = max_new_tokens if max_new_tokens is not None else getattr(gen, "max_new_tokens", None)
    system = "openai" if "http" in str(getattr(gen, "name", "")) else "ragnodes"
    return start(
        f"chat {model}",
        {"gen_ai.operation.name": "chat", "gen_ai.system": system,
         "gen_ai.provider.name": system, "gen_ai.request.model": model,
         "gen_ai.request.max_tokens": n,
         "gen_ai.request.temperature": getattr(gen, "temperature", None),
         "openinference.span.kind": "LLM", "rag.stage": "generate"},
        parent,
    )


def usage(s: Span, gen: Any, messages: Sequence[dict[str, Any]], text: str,
          tokens: int | None = None) -> None:
    """Token counts on a generation span (the generator's tokenizer, else ~4 chars a token);
    ``tokens``: the decoding steps counted by the token loop, when it counts them."""
    if s is INVALID_SPAN:
        return
    from rag.core.tokens import token_counter

    count = token_counter(gen)
    s.set_attribute("gen_ai.usage.input_tokens",
                    sum(count(str(m.get("content", ""))) for m in messages))
    s.set_attribute("gen_ai.usage.output_tokens", tokens if tokens else count(text))
    if capture_content():
        s.set_attribute("gen_ai.completion", text)


# -- configuration from OTEL_* --------------------------------------------------------------------
def configure(service_name: str = "ragnodes") -> bool:
    """Install an SDK ``TracerProvider`` with the exporters the ``OTEL_*`` variables name;
    returns whether one was installed. Nothing happens when none is named (or
    ``OTEL_SDK_DISABLED=true``), or when the application already set a provider."""
    if os.environ.get("OTEL_SDK_DISABLED", "").lower() == "true" or enabled():
        return False
    names = [
        n.strip().lower()
        for n in os.environ.get("OTEL_TRACES_EXPORTER", "").split(",")
        if n.strip() and n.strip().lower() != "none"
    ]
    if not names and (
        os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
        or os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    ):
        names = ["otlp"]
    if not names:
        return False
    try:
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import (
            BatchSpanProcessor,
            ConsoleSpanExporter,
            SimpleSpanProcessor,
        )
    except ImportError:
        logger.warning(
            "OTEL_* asks for %s but the OpenTelemetry SDK is not installed: "
            'pip install "ragnodes[otel]"', ",".join(names)
        )
        return False
    attrs = {} if os.environ.get("OTEL_SERVICE_NAME") else {"service.name": service_name}
    provider = TracerProvider(resource=Resource.create(attrs))
    for name in names:
        if name == "console":
            provider.add_span_processor(SimpleSpanProcessor(ConsoleSpanExporter()))
        elif name == "otlp":
            exporter = _otlp_exporter()
            if exporter is not None:
                provider.add_span_processor(BatchSpanProcessor(exporter))
        else:
            logger.warning("OTEL_TRACES_EXPORTER=%s is not supported (console, otlp)", name)
    trace.set_tracer_provider(provider)
    return True


def _otlp_exporter() -> Any:
    proto = os.environ.get(
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL", "")
    )
    modules = ["opentelemetry.exporter.otlp.proto.http.trace_exporter",
               "opentelemetry.exporter.otlp.proto.grpc.trace_exporter"]
    if proto == "grpc":
        modules.reverse()
    for module in modules:
        try:
            mod = __import__(module, fromlist=["OTLPSpanExporter"])
        except ImportError:
            continue
        return mod.OTLPSpanExporter()
    logger.warning(
        "OTLP tracing asked for but no OTLP exporter is installed: "
        'pip install "ragnodes[otel]" (opentelemetry-exporter-otlp-proto-http)'
    )
    return None


def shutdown() -> None:
    """Flush and stop the SDK provider that :func:`configure` installed (at server exit)."""
    provider = trace.get_tracer_provider()
    stop = getattr(provider, "shutdown", None)
    if callable(stop):
        stop()
