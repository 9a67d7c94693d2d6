"""Traces across the order path (OpenTelemetry), off by default (TRACING_ENABLED): one order,
one trace (docs/observability.md, "Traces"). Off, every helper returns at its first test; the
provider is this module's, not the global one, so tests can swap in an in-memory exporter."""

from __future__ import annotations

import contextlib
import random
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.propagate import extract, inject
from opentelemetry.trace import Link, Span, SpanContext, SpanKind, Tracer

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider

    from hotdeal_core.settings import Settings

_tracer: Tracer | None = None  # None: tracing is off
_provider: TracerProvider | None = None
# The share of the API's requests traced, decided before any span exists (`head_sampled`):
# an unsampled span still costs the SDK ~15 us (ids, sampler, context), so a request left
# out makes none. Its provider then keeps every root it is given (ratio 1).
_head_ratio = 1.0
_OFF: contextlib.nullcontext[None] = contextlib.nullcontext()
Headers = dict[str, str]  # W3C trace context headers: traceparent (and tracestate)


def enabled() -> bool:
    return _tracer is not None


def configure(settings: Settings, service: str, *, head_sampling: bool = False) -> None:
    """Turn tracing on if TRACING_ENABLED: TRACING_SAMPLE_RATIO, OTLP/HTTP batches to
    OTEL_EXPORTER_OTLP_ENDPOINT. `head_sampling`: the process decides per request itself
    (`head_sampled`, the API) and the SDK keeps every root it then starts."""
    if not settings.tracing_enabled or _tracer is not None:
        return
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    endpoint = settings.otel_exporter_otlp_endpoint
    exporter = OTLPSpanExporter(endpoint=f"{endpoint.rstrip('/')}/v1/traces"
                                if endpoint else None)
    ratio = settings.tracing_sample_ratio
    provider = new_provider(service, 1.0 if head_sampling else ratio)
    provider.add_span_processor(BatchSpanProcessor(exporter))
    install(provider, head_ratio=ratio if head_sampling else 1.0)


def new_provider(service: str, ratio: float) -> TracerProvider:
    """An SDK provider sampling root spans at `ratio`; children follow their parent."""
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

    return TracerProvider(resource=Resource.create({"service.name": service}),
                          sampler=ParentBased(TraceIdRatioBased(ratio)))


def install(provider: TracerProvider, head_ratio: float = 1.0) -> None:
    """Trace with `provider` from now on (configure's, or a test's in-memory one)."""
    global _tracer, _provider, _head_ratio
    _provider, _tracer, _head_ratio = provider, provider.get_tracer("hotdeal"), head_ratio


def uninstall() -> None:
    """Tracing off again (flushing what the provider holds)."""
    global _tracer, _provider, _head_ratio
    if _provider is not None:
        _provider.shutdown()
    _tracer, _provider, _head_ratio = None, None, 1.0


def head_sampled() -> bool:
    """Whether to trace a request that comes without a trace context (on only)."""
    return _tracer is not None and (_head_ratio >= 1.0 or random.random() < _head_ratio)


def provider() -> TracerProvider | None:
    """The provider in use (FastStream's telemetry middleware takes it), None when off."""
    return _provider


def span(name: str, *, kind: SpanKind = SpanKind.INTERNAL,
         parent: otel_context.Context | None = None, root: bool = False,
         links: Sequence[Link] | None = None) -> contextlib.AbstractContextManager[Span | None]:
    """A span made current for the block: the child of `parent`, else of the current span;
    a new trace only if `root`. Off, outside a trace or inside one the sampler dropped: a
    shared no-op, and the block gets None (an untraced request's steps cost nothing)."""
    if _tracer is None:
        return _OFF
    if parent is None and not root \
            and not trace.get_current_span().get_span_context().trace_flags.sampled:
        return _OFF
    return _tracer.start_as_current_span(name, context=parent, kind=kind, links=links)


def current_link() -> Link | None:
    """A link to the current span if it is sampled (what a batch span links to), else None."""
    if _tracer is None:
        return None
    context = trace.get_current_span().get_span_context()
    return Link(context) if context.trace_flags.sampled else None


def batch_span(name: str, links: Sequence[Link | None],
               size: int) -> contextlib.AbstractContextManager[Span | None]:
    """One span for a batch, child of its first sampled caller and linked to the others;
    none if no caller was sampled (a batch of unsampled requests costs nothing more)."""
    if _tracer is None:
        return _OFF
    sampled = [link for link in links if link is not None]
    if not sampled:
        return _OFF
    parent = trace.set_span_in_context(trace.NonRecordingSpan(sampled[0].context),
                                       otel_context.Context())
    return _tracer.start_as_current_span(name, context=parent, links=sampled[1:],
                                         attributes={"hotdeal.batch.size": size})


def headers() -> Headers | None:
    """The current context as W3C headers (an outbox row keeps them); None when off or
    outside a sampled trace: its row is then sent without a span or a header, so the
    record's consumer never continues a trace whose start was dropped."""
    if _tracer is None or not trace.get_current_span().get_span_context().trace_flags.sampled:
        return None
    carrier: Headers = {}
    inject(carrier)
    return carrier or None


def context_of(carrier: Mapping[str, Any] | None) -> otel_context.Context | None:
    """The context a row's or a record's headers carry (None without any)."""
    if not carrier:
        return None
    return extract(carrier)


def kafka_headers(carrier: Mapping[str, str] | None) -> list[tuple[str, bytes]] | None:
    """Headers for an aiokafka record."""
    if not carrier:
        return None
    return [(k, v.encode()) for k, v in carrier.items()]


def record_headers(record: Any) -> Headers | None:
    """The W3C headers of an aiokafka ConsumerRecord (a tuple of (name, bytes) pairs)."""
    found = {k: bytes(v).decode(errors="replace") for k, v in (record.headers or ())
             if k in ("traceparent", "tracestate")}
    return found or None


class SendSpan:
    """A PRODUCER span from the send of a record to its acknowledgement (the relay's)."""

    def __init__(self, topic: str, key: str, carrier: Mapping[str, str] | None) -> None:
        assert _tracer is not None
        self.span = _tracer.start_span(
            f"{topic} publish", context=context_of(carrier), kind=SpanKind.PRODUCER,
            attributes={"messaging.system": "kafka", "messaging.destination.name": topic,
                        "messaging.kafka.message.key": key})
        carried: Headers = {}
        inject(carried, context=trace.set_span_in_context(self.span))
        self.headers = carried

    def end(self, error: BaseException | None) -> None:
        if error is not None:
            self.span.record_exception(error)
            self.span.set_status(trace.StatusCode.ERROR, type(error).__name__)
        self.span.end()


def send_span(topic: str, key: str, carrier: Mapping[str, str] | None) -> SendSpan | None:
    """The send span of a row that carries a trace (none for one that does not)."""
    return None if _tracer is None or not carrier else SendSpan(topic, key, carrier)


def record_spans(name: str, carriers: Sequence[Headers | None], start_ns: int,
                 attributes: Mapping[str, Any] | None = None) -> None:
    """A span per record whose headers carry a trace (settled as part of a batch that
    began at `start_ns`), child of the record's context and linked to the current (batch)
    span: each order's trace then ends with its own settlement."""
    if _tracer is None:
        return
    batch = trace.get_current_span().get_span_context()
    links = [Link(batch)] if batch.is_valid else None
    end = time.time_ns()
    for carrier in carriers:
        parent = context_of(carrier)
        if parent is None:
            continue
        _tracer.start_span(name, context=parent, kind=SpanKind.CONSUMER, links=links,
                           start_time=start_ns, attributes=attributes).end(end_time=end)


def links_of(carriers: Sequence[Headers | None]) -> list[Link]:
    """Links to the sampled contexts the records' headers carry (for `batch_span`)."""
    links = []
    for carrier in carriers:
        parent = context_of(carrier)
        if parent is None:
            continue
        context: SpanContext = trace.get_current_span(parent).get_span_context()
        if context.is_valid and context.trace_flags.sampled:
            links.append(Link(context))
    return links


def kafka_middlewares() -> list[Any]:
    """FastStream's telemetry middleware for a consumer's broker (none when off): a span
    per consumed message (a batch: one for the lot), child of the record's traceparent."""
    if _provider is None:
        return []
    from faststream.kafka.opentelemetry import KafkaTelemetryMiddleware

    return [KafkaTelemetryMiddleware(tracer_provider=_provider)]
