"""A deal's verifications after its swarm, from Postgres and Kafka: no oversell, nobody over
the limit, every accepted id an order of the deal with its OrderPlaced on Kafka exactly
once. Engine, servers and topic are parameters, so the tests run them on the test stack."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import Collection, Mapping
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from devtools.swarm.checks import (
    Check,
    check_audit,
    check_kafka_counts,
    check_limits,
    check_oversell,
    check_persisted,
)

_UNITS_PER_USER = text("SELECT user_id, sum(quantity) FROM orders WHERE hot_deal_id = :d "
                       "AND status IN ('PENDING', 'CONFIRMED') GROUP BY user_id")
_PLACED = ("FROM outbox o JOIN orders r ON o.key = r.id::text "
           "WHERE r.hot_deal_id = :d AND o.event_type = 'OrderPlaced'")


UNPUBLISHED = f"SELECT count(*) {_PLACED} AND o.published_at IS NULL"
#: Orders whose payment the API recorded but the stock worker has not applied yet.
UNSETTLED = ("SELECT count(*) FROM orders o JOIN payments p ON p.order_id = o.id WHERE "
             "o.hot_deal_id = :d AND o.status = 'PENDING' AND p.outcome = 'accepted'")


async def wait_zero(engine: AsyncEngine, count_sql: str, deal_id: int, timeout: float,
                    what: str = "") -> int:
    """Poll `count_sql` (a count for deal :d) until it is 0 or the deadline; returns the last
    count. With `what`, prints the count every 5 s."""
    deadline = time.monotonic() + timeout
    next_print = time.monotonic() + 5
    while True:
        async with engine.connect() as conn:
            left = int((await conn.execute(text(count_sql), {"d": deal_id})).scalar_one())
        if left == 0 or time.monotonic() > deadline:
            return left
        if what and time.monotonic() >= next_print:
            print(f"[swarm] {left:,} {what}", flush=True)
            next_print += 5
        await asyncio.sleep(0.2)


async def placed_counts(bootstrap: str, topic: str, wanted: Collection[str],
                        timeout: float = 60.0) -> Counter[str]:
    """OrderPlaced events per order id of `wanted`, reading `topic` from the beginning up to
    the end offsets taken at the start (no consumer group, nothing committed)."""
    keys, counts = {i.encode() for i in wanted}, Counter[str]()
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None,
                                enable_auto_commit=False, auto_offset_reset="earliest")
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await consumer.start()
    await admin.start()
    try:
        if topic not in await consumer.topics():  # describe_topics would create it
            return counts
        [meta] = await admin.describe_topics([topic])
        tps = [TopicPartition(topic, p["partition"]) for p in meta["partitions"]]
        consumer.assign(tps)
        end = await consumer.end_offsets(tps)
        await consumer.seek_to_beginning(*tps)
        left = {tp for tp in tps if await consumer.position(tp) < end[tp]}
        deadline = time.monotonic() + timeout
        while left:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{topic} not read to its end offsets within {timeout:g} s")
            for tp, messages in (await consumer.getmany(*left, timeout_ms=500)).items():
                for m in messages:
                    if m.offset < end[tp] and m.key in keys and \
                            json.loads(m.value).get("type") == "OrderPlaced":
                        counts[m.key.decode()] += 1
            left = {tp for tp in left if await consumer.position(tp) < end[tp]}
    finally:
        await admin.close()
        await consumer.stop()
    return counts


async def verify_deal(engine: AsyncEngine, deal_id: int, accepted: Collection[str], *,
                      bootstrap: str, topic: str, audit: Mapping[str, Any] | None,
                      timeout: float = 60.0) -> list[Check]:
    """Every verification of one deal after its swarm (see the module docstring)."""
    async with engine.connect() as conn:
        initial, limit = (await conn.execute(text(
            "SELECT initial_stock, per_user_limit FROM hot_deals WHERE id = :d"),
            {"d": deal_id})).one()
        held = [(str(u), int(n)) for u, n in await conn.execute(_UNITS_PER_USER, {"d": deal_id})]
        ids = {str(i) for i in (await conn.execute(text(
            "SELECT id FROM orders WHERE hot_deal_id = :d"), {"d": deal_id})).scalars()}
    checks = [check_oversell(sum(n for _, n in held), int(initial)), check_limits(held, limit),
              check_persisted(accepted, ids)]
    if audit is not None:
        checks.insert(1, check_audit(audit))
    unpublished = await wait_zero(engine, UNPUBLISHED, deal_id, timeout)
    try:
        kafka = check_kafka_counts(accepted, await placed_counts(bootstrap, topic, accepted,
                                                                 timeout))
    except (TimeoutError, OSError) as exc:
        kafka = Check("OrderPlaced on Kafka exactly once", False, f"not checked: {exc}")
    if unpublished:
        kafka = Check(kafka.name, False, f"{kafka.detail}; {unpublished:,} OrderPlaced outbox "
                      f"rows still unpublished after {timeout:g} s", kafka.data)
    return [*checks, kafka]


async def deal_figures(engine: AsyncEngine, deal_id: int) -> dict[str, Any]:
    """Orders by status (and cancel reason) and the OrderPlaced outbox publish delay."""
    async with engine.connect() as conn:
        rows = (await conn.execute(text(
            "SELECT status, cancel_reason, count(*), coalesce(sum(quantity), 0) FROM orders "
            "WHERE hot_deal_id = :d GROUP BY 1, 2 ORDER BY 1, 2"), {"d": deal_id})).all()
        n, p50, p95, top = (await conn.execute(text(
            "SELECT count(*), percentile_cont(0.5) WITHIN GROUP (ORDER BY ms), "
            "percentile_cont(0.95) WITHIN GROUP (ORDER BY ms), max(ms) FROM (SELECT "
            "EXTRACT(EPOCH FROM o.published_at - o.created_at) * 1000 AS ms "
            f"{_PLACED} AND o.published_at IS NOT NULL) s"), {"d": deal_id})).one()
    return {"orders_by_status": [{"status": s, "reason": r, "orders": int(c), "units": int(u)}
                                 for s, r, c, u in rows],
            "outbox_delay": {"rows": int(n), **{k: None if v is None else float(v) for k, v in
                                                zip(("p50_ms", "p95_ms", "max_ms"), (p50, p95, top),
                                                    strict=True)}}}
