"""Tracing without services, on the SDK's in-memory exporter: off it builds nothing; on, a
natural batch's span follows its first sampled caller and links the others, the relay's
record carries its send span's context (child of the row's), and each record of a settled
batch gets a settlement span in its own trace."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any
from uuid import uuid4

import pytest
from aiokafka import ConsumerRecord
from faststream.kafka.message import KafkaAckableMessage
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from hotdeal_core.batching import Batcher
from hotdeal_core.messaging.consumer import RetryPolicy, handle_batch
from hotdeal_core.messaging.outbox import OutboxRow
from hotdeal_core.messaging.sending import send_all
from hotdeal_core.messaging.topics import Topics
from hotdeal_core.observability import tracing
from hotdeal_core.settings import Settings
from order_api.app import create_app
from order_api.tracing import TracedApp
from schemas.events import PaymentEvent, PaymentSucceeded, payment_event_adapter
from tests.unit.test_consumer_batches import _Consumer

TOPICS = Topics("unit-trace.")


def _install(ratio: float) -> InMemorySpanExporter:
    exporter = InMemorySpanExporter()
    provider = tracing.new_provider("unit", ratio)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.install(provider)
    return exporter


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    yield _install(1.0)
    tracing.uninstall()


@pytest.fixture
def unsampled() -> Iterator[InMemorySpanExporter]:
    yield _install(0.0)
    tracing.uninstall()


def test_off_no_span_no_context_and_no_server_layer_is_built() -> None:
    assert not tracing.enabled()
    with tracing.span("reserve") as span:
        assert span is None
    assert tracing.headers() is None and tracing.current_link() is None
    assert tracing.send_span("t", "k", {"traceparent": "x"}) is None
    assert tracing.kafka_middlewares() == []
    app = create_app(Settings(_env_file=None))
    assert TracedApp not in [getattr(m, "cls", None) for m in app.user_middleware]


def test_on_the_api_gets_its_server_layer(spans: InMemorySpanExporter) -> None:
    app = create_app(Settings(_env_file=None))
    assert TracedApp in [getattr(m, "cls", None) for m in app.user_middleware]


async def _batched(batcher: Batcher[int, int], names: list[str]) -> list[int]:
    async def caller(name: str, item: int) -> int:
        with tracing.span(name, root=True):
            return await batcher.submit(item)
    return list(await asyncio.gather(*(caller(n, i) for i, n in enumerate(names))))


async def test_a_batch_span_is_the_child_of_its_first_sampled_caller_and_links_the_others(
        spans: InMemorySpanExporter) -> None:
    sizes: list[int] = []

    async def write(items: list[int]) -> list[int | BaseException]:
        sizes.append(len(items))
        return [i * 10 for i in items]

    batcher: Batcher[int, int] = Batcher("orders", write)
    batcher.start()
    try:
        assert await _batched(batcher, ["a", "b", "c"]) == [0, 10, 20]
    finally:
        await batcher.stop()
    assert sizes == [3]
    by_name = {s.name: s for s in spans.get_finished_spans()}
    batch, callers = by_name["orders batch"], [by_name[n] for n in "abc"]
    assert batch.parent is not None and batch.parent.span_id == callers[0].context.span_id
    assert batch.context.trace_id == callers[0].context.trace_id
    assert [link.context.span_id for link in batch.links] == [
        c.context.span_id for c in callers[1:]]
    assert batch.attributes is not None and batch.attributes["hotdeal.batch.size"] == 3


async def test_a_batch_of_unsampled_callers_makes_no_span(
        unsampled: InMemorySpanExporter) -> None:
    async def write(items: list[int]) -> list[int | BaseException]:
        return list(items)

    batcher: Batcher[int, int] = Batcher("orders", write)
    batcher.start()
    try:
        await _batched(batcher, ["a", "b"])
    finally:
        await batcher.stop()
    assert unsampled.get_finished_spans() == ()


class _Producer:
    """aiokafka's send(), acknowledged at once; keeps each record's headers."""

    def __init__(self) -> None:
        self.headers: list[list[tuple[str, bytes]] | None] = []

    async def send(self, topic: str, value: bytes, key: bytes,
                   headers: list[tuple[str, bytes]] | None = None) -> asyncio.Future[Any]:
        self.headers.append(headers)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        future.set_result(None)
        return future


def _row(row_id: int, headers: dict[str, str] | None) -> OutboxRow:
    return OutboxRow(row_id, "orders.v1", f"k{row_id}", "{}", datetime.now(UTC), 0, headers)


async def test_the_relay_sends_a_row_under_a_span_in_its_trace_and_the_record_carries_it(
        spans: InMemorySpanExporter) -> None:
    with tracing.span("POST /orders", root=True) as request:
        written = tracing.headers()  # what the outbox row keeps
    assert request is not None and written is not None
    producer = _Producer()
    outcome, broken = await send_all(producer, [_row(1, written), _row(2, None)])
    assert outcome == {1: None, 2: None} and not broken
    sends = [s for s in spans.get_finished_spans() if s.name == "orders.v1 publish"]
    traced = next(s for s in sends if s.context.trace_id == request.get_span_context().trace_id)
    assert traced.kind is SpanKind.PRODUCER
    assert traced.parent is not None
    assert traced.parent.span_id == request.get_span_context().span_id
    header = dict(producer.headers[0] or [])["traceparent"].decode()
    assert header.split("-")[1:3] == [f"{traced.context.trace_id:032x}",
                                      f"{traced.context.span_id:016x}"]


async def test_off_the_relay_passes_a_rows_headers_on_unchanged() -> None:
    producer = _Producer()
    carried = {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}
    await send_all(producer, [_row(1, carried), _row(2, None)])
    assert producer.headers == [[("traceparent", carried["traceparent"].encode())], None]


def _traced_batch(events: list[PaymentEvent], carriers: list[dict[str, str] | None],
                  ) -> KafkaAckableMessage:
    records = tuple(ConsumerRecord(
        TOPICS.payments, 0, offset, 0, 0, str(e.order_id).encode(),
        e.model_dump_json().encode(), None, 0, 0,
        [(k, v.encode()) for k, v in (carrier or {}).items()])
        for offset, (e, carrier) in enumerate(zip(events, carriers, strict=True)))
    return KafkaAckableMessage(raw_message=records, body=[r.value for r in records],
                               consumer=_Consumer())


async def test_each_record_of_a_settled_batch_gets_a_settle_span_in_its_own_trace(
        spans: InMemorySpanExporter) -> None:
    carriers: list[dict[str, str] | None] = []
    roots = []
    for name in ("order 1", "order 2"):
        with tracing.span(name, root=True) as root:
            assert root is not None
            carriers.append(tracing.headers())
            roots.append(root.get_span_context())
    carriers.append(None)  # a record written while tracing was off
    events: list[PaymentEvent] = [PaymentSucceeded(order_id=uuid4(), payment_id=f"p{i}",
                                                   amount=1) for i in range(3)]
    applied: list[PaymentEvent] = []

    async def apply(batch: list[PaymentEvent]) -> None:
        applied.extend(batch)

    await handle_batch(None, TOPICS, _traced_batch(events, carriers), "stock-worker",  # type: ignore[arg-type]
                       payment_event_adapter, apply, retry=RetryPolicy())
    assert applied == events
    settled = [s for s in spans.get_finished_spans() if s.name == "stock-worker settle"]
    assert sorted(s.context.trace_id for s in settled) == sorted(r.trace_id for r in roots)
    assert sorted(s.parent.span_id for s in settled if s.parent) == sorted(
        r.span_id for r in roots)
    # The batch's span: the child of its first traced record, linked to the other one.
    batch = next(s for s in spans.get_finished_spans() if s.name == "stock-worker batch")
    assert batch.parent is not None and batch.parent.span_id == roots[0].span_id
    assert [link.context.span_id for link in batch.links] == [roots[1].span_id]
    for span in settled:
        assert span.kind is SpanKind.CONSUMER
        assert [link.context.span_id for link in span.links] == [batch.context.span_id]


async def _through_traced_app(headers: list[tuple[bytes, bytes]]) -> int:
    """One request through `TracedApp` around an app that reserves (a child span);
    returns the answer's status."""
    statuses: list[int] = []

    async def inner(scope: Any, receive: Any, send: Any) -> None:
        with tracing.span("reserve"):
            await send({"type": "http.response.start", "status": 202, "headers": []})
            await send({"type": "http.response.body", "body": b"{}"})

    async def send(message: Any) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    async def receive() -> Any:
        return {"type": "http.request", "body": b""}

    await TracedApp(inner)({"type": "http", "method": "POST", "path": "/orders",
                            "headers": headers}, receive, send)
    return statuses[0]


@pytest.fixture
def none_sampled() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = tracing.new_provider("unit", 1.0)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.install(provider, head_ratio=0.0)  # as configure() sets the API up, at 0 %
    yield exporter
    tracing.uninstall()


async def test_a_request_left_out_by_head_sampling_makes_no_span_at_all(
        none_sampled: InMemorySpanExporter) -> None:
    assert await _through_traced_app([]) == 202
    assert none_sampled.get_finished_spans() == ()


async def test_a_request_with_a_callers_traceparent_continues_that_trace(
        none_sampled: InMemorySpanExporter) -> None:
    caller = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    assert await _through_traced_app([(b"traceparent", caller.encode())]) == 202
    finished = none_sampled.get_finished_spans()
    server = next(s for s in finished if s.kind is SpanKind.SERVER)
    reserve = next(s for s in finished if s.name == "reserve")
    assert f"{server.context.trace_id:032x}" == "0af7651916cd43dd8448eb211c80319c"
    assert server.parent is not None and f"{server.parent.span_id:016x}" == "b7ad6b7169203331"
    assert reserve.parent is not None
    assert reserve.parent.span_id == server.context.span_id


def test_a_step_outside_any_trace_makes_no_span(spans: InMemorySpanExporter) -> None:
    with tracing.span("reserve") as span:
        assert span is None
    assert tracing.headers() is None
    assert spans.get_finished_spans() == ()


def test_configure_turns_tracing_on_only_when_enabled_and_samples_in_the_api() -> None:
    tracing.configure(Settings(_env_file=None), "hotdeal-order-api", head_sampling=True)
    assert not tracing.enabled()
    settings = Settings(_env_file=None, tracing_enabled=True, tracing_sample_ratio=0.0,
                        otel_exporter_otlp_endpoint="http://127.0.0.1:4318")
    tracing.configure(settings, "hotdeal-order-api", head_sampling=True)
    try:
        assert tracing.enabled()
        assert not any(tracing.head_sampled() for _ in range(1000))  # 0 %: none
        middlewares = tracing.kafka_middlewares()
        assert [type(m).__name__ for m in middlewares] == ["KafkaTelemetryMiddleware"]
    finally:
        tracing.uninstall()
    assert not tracing.enabled()
