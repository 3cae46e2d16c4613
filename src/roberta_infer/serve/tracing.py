"""OpenTelemetry traces of `serve`: a span per request, a span per model call linked to the requests it served.

Nothing is set globally. `serve --otlp-endpoint` gives the server a tracer provider of its own (`otlp_provider`),
exporting over OTLP/HTTP; without one, spans go to whatever provider the embedding application registered with
OpenTelemetry (none registered: OpenTelemetry's no-op tracer, which records nothing). A request whose headers (or
gRPC metadata) carry a W3C `traceparent` gets its span as a child of the caller's (`tracestate` is kept too).

A model call serves texts of several requests, and a request's texts may go to several calls, so neither is the
other's parent: each model call's span is a root linked to the span of every request it served (the link's
attribute `roberta_infer.texts` says how many of that request's texts it ran), as the OpenTelemetry specification
advises for batching (span links).
"""

from __future__ import annotations

from collections import Counter
from typing import ContextManager, Mapping
from urllib.parse import urlsplit

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from ..errors import RobertaInferError
from ..version import __version__

PROPAGATOR = TraceContextTextMapPropagator()  # W3C Trace Context (traceparent, tracestate); not the global propagator
# attributes: the model's name (request spans), a request's texts in a call (links), a call's rows and padded tokens
MODEL, TEXTS = "roberta_infer.model", "roberta_infer.texts"
ROWS, TOKENS = "roberta_infer.batch_size", "roberta_infer.batch_tokens"
TRACES_PATH = "/v1/traces"  # OTLP/HTTP's path for traces


def otlp_traces_url(url: str) -> str:
    """The OTLP/HTTP traces URL for --otlp-endpoint `url`: http(s)://host[:port][/path], with /v1/traces added when
    the URL has no path (as OTEL_EXPORTER_OTLP_ENDPOINT is read). Raises RobertaInferError for anything else."""
    parts = urlsplit(url)
    try:
        ok = (parts.scheme in ("http", "https") and bool(parts.hostname) and parts.port != 0
              and not (parts.query or parts.fragment))
    except ValueError:  # a port that is not a number in 0-65535
        ok = False
    if not ok:
        raise RobertaInferError(f"--otlp-endpoint {url!r}: give an OTLP/HTTP collector's URL, e.g. http://localhost:4318")
    return url if parts.path.strip("/") else url.rstrip("/") + TRACES_PATH


def otlp_provider(url: str) -> TracerProvider:
    """A tracer provider of the server's own (not registered globally) batching its spans to the OTLP/HTTP collector
    at `url` (`otlp_traces_url`), as service roberta-infer. Call its `shutdown()` to send what is left."""
    # deferred: the exporter imports requests and protobuf, which serving without --otlp-endpoint does not need
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    provider = TracerProvider(resource=Resource.create({"service.name": "roberta-infer", "service.version": __version__}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=otlp_traces_url(url))))
    return provider


def server_tracer(provider: trace.TracerProvider | None) -> trace.Tracer:
    """The server's tracer from `provider`; None: from the provider the application registered, if any (read, never
    set; unregistered, a no-op)."""
    return (provider or trace.get_tracer_provider()).get_tracer("roberta_infer.serve", __version__)


def request_span(tracer: trace.Tracer, route: str, method: str, carrier: Mapping[str, str], model: str
                 ) -> ContextManager[trace.Span]:
    """The span of one request, current inside the `with` block (where `current_request` finds it): kind SERVER,
    named "`method` `route`" (e.g. "POST /v1/classify"; gRPC: its full method name and method ""), a child of
    the caller's span when `carrier` (HTTP headers or gRPC metadata: `get` by lower-case name) holds a valid
    `traceparent`. The caller adds the outcome (`http.response.status_code`); an exception ends it as an error."""
    name = f"{method} {route}" if method else route
    attributes = {MODEL: model, "http.route": route, **({"http.request.method": method} if method else {})}
    return tracer.start_as_current_span(name, context=PROPAGATOR.extract(carrier), kind=trace.SpanKind.SERVER,
                                        attributes=attributes)


def current_request() -> trace.SpanContext:
    """The current request span's context (in the task or thread inside `request_span`), for model calls to link
    to; an invalid context (which they skip) outside one."""
    return trace.get_current_span().get_span_context()


def call_span(tracer: trace.Tracer, requests: list[trace.SpanContext], tokens: int) -> ContextManager[trace.Span]:
    """A model call's span, current inside the `with` block: a root, linked once to each valid request span context in
    `requests` (one entry per text of the call: the same object for texts of one request) with that request's
    number of texts; its rows and padded tokens as attributes."""
    served = {id(context): context for context in requests if context.is_valid}  # SpanContext is not hashable
    texts = Counter(map(id, requests))
    return tracer.start_as_current_span("model call", context=Context(), kind=trace.SpanKind.INTERNAL,
                                        links=[trace.Link(context, {TEXTS: texts[key]}) for key, context in served.items()],
                                        attributes={ROWS: len(requests), TOKENS: tokens})
