"""Two stock workers in one consumer group while payments stream in: one is killed (SIGKILL),
a new one joins, the other is stopped (SIGTERM). Every rebalance hands partitions over with
their uncommitted records redelivered, and every order is still settled exactly once, with
no stall (all settled soon after the last payment)."""

from __future__ import annotations

import asyncio
import os
import signal
import uuid
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from sqlalchemy import func, select, text

from devtools.procs import Proc
from hotdeal_core.db.tables import orders, outbox
from hotdeal_core.messaging.topics import Topics
from hotdeal_core.usecases.context import Context
from hotdeal_core.usecases.settlement import GROUP
from schemas.events import PaymentSucceeded
from tests.buyers import buyer_headers
from tests.e2e.conftest import base_env, eventually, start_hot_deal
from tests.random_refs import random_user

ORDERS = 600
CHUNK = 20  # payments per send, one chunk every CHUNK_PAUSE seconds: ~400 events/s
CHUNK_PAUSE = 0.05


def _worker(name: str, run_dir: Path, prefix: str) -> Proc:
    # Small batches: more of them in flight when a member dies, more to redeliver.
    env = {**base_env(), "KAFKA_TOPIC_PREFIX": prefix, "SETTLE_BATCH_MAX_RECORDS": "25"}
    return Proc(name, run_dir, env, module="stock_worker")


async def _place(client: httpx.AsyncClient, pid: int, n: int) -> list[dict[str, Any]]:
    sem = asyncio.Semaphore(20)

    async def one() -> dict[str, Any]:
        async with sem:
            buyer = random_user()
            resp = await client.post("/orders", json={"product_id": pid, "quantity": 1,
                                                      "user_id": buyer},
                                     headers=buyer_headers(buyer))
            assert resp.status_code == 202, resp.text
            return dict(resp.json())
    return list(await asyncio.gather(*(one() for _ in range(n))))


async def _stream(bootstrap: str, topic: str, events: list[PaymentSucceeded]) -> None:
    """Each payment twice (the second copy later, as a provider's retry would be)."""
    once = [(str(e.order_id).encode(), e.model_dump_json().encode()) for e in events]
    chunks = [once[i:i + CHUNK] for i in range(0, len(once), CHUNK)]
    later = 4  # a chunk's copy goes out four chunks after it
    records = [r for k in range(len(chunks) + later)
               for r in (chunks[k] if k < len(chunks) else [])
               + (chunks[k - later] if k >= later else [])]
    assert len(records) == 2 * len(once)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all",
                                enable_idempotence=True, linger_ms=5)
    await producer.start()
    try:
        for i in range(0, len(records), CHUNK):
            sent = [await producer.send(topic, value, key=key)
                    for key, value in records[i:i + CHUNK]]
            await asyncio.gather(*sent)
            await asyncio.sleep(CHUNK_PAUSE)  # the stream's pace, not a wait for a result
    finally:
        await producer.stop()


async def _members(bootstrap: str, group: str) -> int:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        described = (await admin.describe_consumer_groups([group]))[0].to_object()
        return sum(len(g["members"]) for g in described["groups"]
                   if g["state"] == "Stable")
    finally:
        await admin.close()


async def _confirmed(ctx: Context, ids: list[UUID]) -> int:
    async with ctx.engine.connect() as conn:
        return int((await conn.execute(select(func.count()).where(
            orders.c.id.in_(ids), orders.c.status == "CONFIRMED"))).scalar_one())


async def test_orders_settle_exactly_once_while_stock_workers_leave_and_join(
        ctx: Context, client: httpx.AsyncClient, tmp_path: Path) -> None:
    prefix = f"{os.environ['KAFKA_TOPIC_PREFIX']}rebalance{uuid.uuid4().hex[:6]}."
    bootstrap, topics = ctx.settings.kafka_bootstrap_servers, Topics(prefix)
    group = prefix + GROUP
    pid = await start_hot_deal(ctx, client, ORDERS, price=700)
    ids = [UUID(o["order_id"]) for o in await _place(client, pid, ORDERS)]
    payments = [PaymentSucceeded(order_id=i, payment_id=f"rb-{i}", amount=700) for i in ids]

    a, b = _worker("worker-a", tmp_path, prefix), _worker("worker-b", tmp_path, prefix)
    a2 = _worker("worker-a2", tmp_path, prefix)
    procs = [a, b, a2]
    try:
        for p in (a, b):
            p.start()
        for p in (a, b):
            p.wait_ready(90)
        # Two members per worker: one consumer per subscriber (payments, order requests).
        await eventually(lambda: _is(_members(bootstrap, group), 4), 60,
                         "both workers in the group")
        stream = asyncio.create_task(_stream(bootstrap, topics.payments, payments))
        await eventually(lambda: _at_least(_confirmed(ctx, ids), ORDERS // 5), 60,
                         "a fifth of the orders settled")
        a.signal(signal.SIGKILL)  # mid-batch, offsets uncommitted
        a2.start().wait_ready(90)
        await eventually(lambda: _at_least(_confirmed(ctx, ids), ORDERS // 2), 60,
                         "half of the orders settled")
        b.signal(signal.SIGTERM)  # a graceful leave while the stream goes on
        await stream
        await eventually(lambda: _at_least(_confirmed(ctx, ids), ORDERS), 60,
                         "every order settled after the last payment")
    finally:
        for p in procs:
            p.stop(timeout=30)

    async with ctx.engine.connect() as conn:
        events: dict[str, int] = {str(t): int(n) for t, n in (await conn.execute(
            select(outbox.c.event_type, func.count()).where(outbox.c.key.in_(
                [str(i) for i in ids])).group_by(outbox.c.event_type))).all()}
        processed = (await conn.execute(text(
            "SELECT count(*) FROM processed_events WHERE consumer = :c AND event_id = ANY(:e)"),
            {"c": GROUP, "e": [p.event_id for p in payments]})).scalar_one()
    # One effect per order: one confirmation, no refund (a duplicate is not a 2nd payment).
    assert events == {"OrderPlaced": ORDERS, "OrderConfirmed": ORDERS}
    assert processed == ORDERS
    deal = (await client.get(f"/products/{pid}")).json()["deal"]
    assert deal["remaining"] == 0


async def _is(value: Any, expected: int) -> bool:
    return bool(await value == expected)


async def _at_least(value: Any, expected: int) -> bool:
    return bool(await value >= expected)
