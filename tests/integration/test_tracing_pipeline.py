"""One order's trace end to end, with the SDK's in-memory exporter, against the real
Postgres, Redis and Kafka: the API's request, its reservation and group commit, the outbox
row's `traceparent`, the relay's send (the header on the Kafka record) and the stock
worker's settlement of the payment that followed the order."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any
from uuid import UUID

import httpx
import pytest
from aiokafka import AIOKafkaConsumer
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from sqlalchemy import select

from hotdeal_core import signature
from hotdeal_core.db.tables import orders, outbox
from hotdeal_core.observability import tracing
from hotdeal_core.settings import Settings
from hotdeal_core.usecases import deals, products
from hotdeal_core.usecases.context import Context
from order_api.app import create_app
from stock_worker.app import create_app as create_worker
from tests.buyers import buyer_headers
from tests.random_refs import random_name, random_user
from tests.waiting import eventually


@pytest.fixture(scope="module")
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = tracing.new_provider("hotdeal-test", 1.0)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.install(provider)
    yield exporter
    tracing.uninstall()


@pytest.fixture(scope="module")
async def api(spans: InMemorySpanExporter) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(Settings(_env_file=None))  # traced: the module's provider is installed
    async with LifespanManager(app, startup_timeout=30, shutdown_timeout=30), \
            httpx.AsyncClient(transport=httpx.ASGITransport(app),
                              base_url="http://test") as client:
        client.app = app  # type: ignore[attr-defined]
        yield client
    await app.state.resources.redis.connection_pool.aclose()


def _ctx(api: httpx.AsyncClient) -> Context:
    app: FastAPI = api.app  # type: ignore[attr-defined]
    ctx: Context = app.state.ctx
    return ctx


def _trace_ids(exporter: InMemorySpanExporter, name: str) -> dict[str, list[ReadableSpan]]:
    found: dict[str, list[ReadableSpan]] = {}
    for span in exporter.get_finished_spans():
        if span.name == name or span.name.endswith(f" {name}"):
            found.setdefault(f"{span.context.trace_id:032x}", []).append(span)
    return found


async def _published_row(ctx: Context, key: str, event_type: str) -> Any:
    """The outbox row of `key`'s event once the relay published it, else None."""
    async with ctx.engine.connect() as conn:
        row = (await conn.execute(select(outbox.c.headers, outbox.c.published_at).where(
            outbox.c.key == key, outbox.c.event_type == event_type))).first()
    return None if row is None or row.published_at is None else row


async def _record_headers(settings: Settings, topic: str, key: str) -> dict[str, bytes]:
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=settings.kafka_bootstrap_servers,
                                auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                for record in records:
                    if record.key == key.encode():
                        return dict(record.headers)
        raise AssertionError(f"no record of key {key} on {topic}")
    finally:
        await consumer.stop()


async def test_an_orders_trace_runs_from_its_request_to_its_settlement(
        api: httpx.AsyncClient, spans: InMemorySpanExporter) -> None:
    ctx, settings = _ctx(api), Settings(_env_file=None)
    product = await products.create_product(ctx, random_name("trace"), 1000, 5)
    await deals.start_deal(ctx, deals.StartDeal(product.id, 5, 1, 3600))
    buyer = random_user()

    placed = await api.post("/orders", json={"product_id": product.id, "quantity": 1},
                            headers=buyer_headers(buyer))
    assert placed.status_code == 202, placed.text
    order_id = placed.json()["order_id"]
    (trace_id, requests), = _trace_ids(spans, "/orders").items()
    assert requests[0].name == "POST /orders"
    # The reservation and the order's write are the request's children; the group commits'
    # batch spans continue the trace (this order was the first sampled caller).
    for name in ("reserve", "order write", "reservations batch", "orders batch"):
        assert trace_id in _trace_ids(spans, name), name

    # The outbox row carries the request's context; the relay sends it as a header.
    published = await eventually(lambda: _published_row(ctx, order_id, "OrderPlaced"),
                                 what="OrderPlaced published")
    row: dict[str, str] | None = published.headers
    assert row is not None, "the outbox row carries no trace context"
    assert row["traceparent"].split("-")[1] == trace_id
    sent = await eventually(lambda: _async(_trace_ids(spans, "publish").get(trace_id)),
                            what="the relay's send span")
    assert sent[0].parent is not None
    record = await _record_headers(settings, ctx.topics.orders, order_id)
    assert record["traceparent"].decode().split("-")[1] == trace_id
    assert record["traceparent"].decode().split("-")[2] == f"{sent[0].context.span_id:016x}"

    # The payment of this order, its caller passing the order's trace on, is settled by the
    # stock worker within the same trace.
    body = json.dumps({"payment_id": random_name("pay"), "order_id": order_id,
                       "status": "succeeded", "amount": 1000}).encode()
    paid = await api.post("/payments/webhook", content=body, headers={
        "Content-Type": "application/json", "traceparent": row["traceparent"],
        "X-Payment-Signature": signature.sign(
            settings.payment_webhook_secret.get_secret_value(), int(time.time()), body)})
    assert paid.status_code == 200 and paid.json()["outcome"] == "accepted", paid.text
    worker = create_worker(settings)
    await worker.start()
    try:
        settled = await eventually(
            lambda: _async(_trace_ids(spans, "settle").get(trace_id)), timeout=60,
            what="the stock worker's settlement span")
    finally:
        await worker.stop()
    assert settled[0].attributes is not None
    assert settled[0].attributes["messaging.consumer.group.name"] == "stock-worker"
    async with ctx.engine.connect() as conn:
        status = (await conn.execute(select(orders.c.status).where(
            orders.c.id == UUID(order_id)))).scalar_one()
    assert status == "CONFIRMED"
    # The trace holds every step, from the request to the settlement.
    names = {s.name for s in spans.get_finished_spans()
             if f"{s.context.trace_id:032x}" == trace_id}
    assert {"POST /orders", "reserve", "order write", "POST /payments/webhook",
            "payments batch", f"{ctx.topics.orders} publish",
            f"{ctx.topics.payments} publish", "stock-worker settle"} <= names, names


async def _async(value: Any) -> Any:
    return value
