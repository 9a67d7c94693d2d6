"""The real stock worker settling a burst of payment events in batches: every order once,
in the order its events were written, duplicates skipped, garbage dead-lettered."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any
from uuid import UUID, uuid4

import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from sqlalchemy import func, select

from hotdeal_core.db.tables import outbox
from hotdeal_core.usecases.context import Context
from schemas.events import PaymentFailed, PaymentSucceeded
from tests.buyers import buyer_headers
from tests.e2e.conftest import order_status, start_hot_deal
from tests.random_refs import random_user


async def _order(client: httpx.AsyncClient, pid: int) -> dict[str, Any]:
    buyer = random_user()
    resp = await client.post("/orders", json={"product_id": pid, "user_id": buyer,
                                              "quantity": 1}, headers=buyer_headers(buyer))
    assert resp.status_code == 202, resp.text
    return dict(resp.json())


async def _publish(ctx: Context, records: list[tuple[bytes, bytes]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=ctx.settings.kafka_bootstrap_servers,
                                acks="all", enable_idempotence=True, linger_ms=20)
    await producer.start()
    try:
        sent = [await producer.send(ctx.topics.payments, value, key=key)
                for key, value in records]
        await asyncio.gather(*sent)
    finally:
        await producer.stop()


async def _dead_letter(ctx: Context, key: str, timeout: float = 30) -> dict[str, Any]:
    consumer = AIOKafkaConsumer(ctx.topics.dead_letter,
                                bootstrap_servers=ctx.settings.kafka_bootstrap_servers,
                                group_id=None, auto_offset_reset="earliest")
    await consumer.start()
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for records in (await consumer.getmany(timeout_ms=200)).values():
                for r in records:
                    letter = json.loads(r.value)
                    if letter["key"] == key:
                        return dict(letter)
        raise AssertionError(f"no dead letter for {key} within {timeout} s")
    finally:
        await consumer.stop()


def _record(event: PaymentSucceeded | PaymentFailed) -> tuple[bytes, bytes]:
    return str(event.order_id).encode(), event.model_dump_json().encode()


async def test_a_burst_of_payments_is_settled_once_each_in_the_order_written(
        ctx: Context, client: httpx.AsyncClient) -> None:
    pid = await start_hot_deal(ctx, client, 40, price=1000)
    placed = [await _order(client, pid) for _ in range(40)]
    ids = [UUID(o["order_id"]) for o in placed]
    paid = [PaymentSucceeded(order_id=i, payment_id=f"burst-{i}", amount=1000)
            for i in ids[:30]]
    # The other ten: a failed payment, then a successful one (paid after the cancel).
    failed = [PaymentFailed(order_id=i, payment_id=f"fail-{i}", amount=1000) for i in ids[30:]]
    late = [PaymentSucceeded(order_id=i, payment_id=f"late-{i}", amount=1000)
            for i in ids[30:]]
    garbage = f"garbage-{uuid4()}"
    records = [_record(e) for e in paid + failed + late + paid]  # + every payment again
    records.insert(20, (garbage.encode(), b"{not json"))
    await _publish(ctx, records)
    for order in placed[:30]:
        await order_status(client, order, "CONFIRMED")
    for order in placed[30:]:
        cancelled = await order_status(client, order, "CANCELLED")
        assert cancelled["cancel_reason"] == "payment_failed"
    async with ctx.engine.connect() as conn:
        rows = (await conn.execute(select(outbox.c.event_type, func.count()).where(
            outbox.c.key.in_([str(i) for i in ids])).group_by(outbox.c.event_type))).all()
    assert dict(rows) == {"OrderPlaced": 40, "OrderConfirmed": 30, "OrderCancelled": 10,
                          "RefundRequested": 10}
    letter = await _dead_letter(ctx, garbage)
    assert letter["raw"] == "{not json" and "unparseable" in letter["reason"]
    deal = (await client.get(f"/products/{pid}")).json()["deal"]
    assert deal["remaining"] == 10  # the failed payments' units are back on sale
