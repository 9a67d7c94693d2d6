"""The hot-deal lifecycle across the real processes: stop -> flush -> reconciled, re-runs,
Redis wiped mid-deal, a crash between reservation and order write, a crash mid-flush.
The audit must hold after every scenario."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from redis.asyncio import Redis
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncConnection

from devtools.procs import Proc
from hotdeal_core.db.tables import hot_deals, orders, products, reconciliations
from hotdeal_core.usecases.audit import audit_deal, latest_deal_id
from hotdeal_core.usecases.context import Context
from hotdeal_core.usecases.flush import flush_deal
from schemas.events import HotDealEnded
from tests.buyers import buyer_headers
from tests.e2e.conftest import (
    ADMIN,
    Stack,
    api_proc,
    eventually,
    order_status,
    pay,
    start_hot_deal,
)
from tests.random_refs import random_user

ADMIN_HEADERS = {"Authorization": f"Bearer {ADMIN}"}


async def _buy(client: httpx.AsyncClient, pid: int, user: str | None = None) -> httpx.Response:
    user = user or random_user()
    return await client.post("/orders", json={"product_id": pid, "quantity": 1,
                                              "user_id": user}, headers=buyer_headers(user))


async def _deal_status(ctx: Context, deal_id: int) -> str:
    async with ctx.engine.connect() as conn:
        return str((await conn.execute(select(hot_deals.c.status).where(
            hot_deals.c.id == deal_id))).scalar_one())


async def _product_stock(ctx: Context, pid: int) -> int:
    async with ctx.engine.connect() as conn:
        return int((await conn.execute(select(products.c.stock).where(
            products.c.id == pid))).scalar_one())


async def _reconciled(ctx: Context, deal_id: int, timeout: float = 60) -> None:
    async def probe() -> bool:
        return await _deal_status(ctx, deal_id) == "RECONCILED"
    await eventually(probe, timeout, f"deal {deal_id} to be reconciled")


async def _assert_audit_holds(ctx: Context, deal_id: int) -> None:
    audit = await audit_deal(ctx, deal_id)
    assert audit.balanced, audit.as_dict()


async def test_stop_flushes_back_exactly_what_was_not_sold(ctx: Context,
                                                           client: httpx.AsyncClient) -> None:
    pid = await start_hot_deal(ctx, client, 10)  # the product had 10, all moved to the deal
    placed = [(await _buy(client, pid)).json() for _ in range(5)]
    await pay(client, placed[0])
    await pay(client, placed[1])
    await pay(client, placed[2], status="failed")
    for order, status in zip(placed[:3], ["CONFIRMED", "CONFIRMED", "CANCELLED"], strict=True):
        await order_status(client, order, status)
    deal_id = await latest_deal_id(ctx, pid)

    ended = await client.post(f"/products/{pid}/hotdeal/end", headers=ADMIN_HEADERS)
    assert ended.status_code == 200 and ended.json()["ended_now"] is True
    refused = await _buy(client, pid)
    assert refused.status_code == 409 and refused.json()["error"]["code"] == "deal_not_active"
    await _reconciled(ctx, deal_id)
    # sold = 2 confirmed + 2 still pending: 10 - 4 units are back in Postgres, exactly.
    assert await _product_stock(ctx, pid) == 6
    await _assert_audit_holds(ctx, deal_id)

    # A pending order cancelled after the flush gives its unit to Postgres.
    await pay(client, placed[3], status="failed")
    await order_status(client, placed[3], "CANCELLED")

    async def stock_is_7() -> bool:
        return await _product_stock(ctx, pid) == 7
    await eventually(stock_is_7, what="the late cancellation to reach Postgres")
    await _assert_audit_holds(ctx, deal_id)


async def _group_caught_up(bootstrap: str, group: str, topic: str, partition: int,
                           offset: int) -> bool:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        committed = await admin.list_consumer_group_offsets(group)
    finally:
        await admin.close()
    for tp, meta in committed.items():
        if tp.topic == topic and tp.partition == partition:
            return bool(meta.offset > offset)
    return False


async def test_flush_rerun_and_duplicate_ended_event_count_nothing_twice(
        ctx: Context, client: httpx.AsyncClient) -> None:
    pid = await start_hot_deal(ctx, client, 4)
    await _buy(client, pid)
    deal_id = await latest_deal_id(ctx, pid)
    await client.post(f"/products/{pid}/hotdeal/end", headers=ADMIN_HEADERS)
    await _reconciled(ctx, deal_id)
    stock = await _product_stock(ctx, pid)
    assert stock == 3

    again = await flush_deal(ctx, deal_id)
    assert again.already and again.returned == 3
    producer = AIOKafkaProducer(bootstrap_servers=ctx.settings.kafka_bootstrap_servers)
    await producer.start()
    try:
        duplicate = HotDealEnded(hot_deal_id=deal_id, product_id=pid)
        meta = await producer.send_and_wait(ctx.topics.hotdeals,
                                            duplicate.model_dump_json().encode(),
                                            key=str(pid).encode())
    finally:
        await producer.stop()

    async def consumed() -> bool:
        group = ctx.settings.kafka_topic_prefix + "reconciler"
        return await _group_caught_up(ctx.settings.kafka_bootstrap_servers, group,
                                      meta.topic, meta.partition, meta.offset)
    await eventually(consumed, 60, "the reconciler to consume the duplicate")
    assert await _product_stock(ctx, pid) == 3
    async with ctx.engine.connect() as conn:
        rows = (await conn.execute(select(func.count()).select_from(reconciliations).where(
            reconciliations.c.hot_deal_id == deal_id))).scalar_one()
    assert rows == 1
    await _assert_audit_holds(ctx, deal_id)


@pytest.mark.timeout(180)
async def test_redis_wiped_mid_deal_refuses_until_recovered_and_never_oversells(
        ctx: Context, client: httpx.AsyncClient, stack: Stack, redis: Redis) -> None:
    stock = 60
    pid = await start_hot_deal(ctx, client, stock)
    deal_id = await latest_deal_id(ctx, pid)
    outcomes: list[str] = []
    after_wipe: list[str] = []  # outcomes of requests that started while Redis was empty
    stop, wiped = asyncio.Event(), asyncio.Event()

    async def crowd(worker: int) -> None:
        n = 0
        while not stop.is_set():
            n += 1
            started_after_wipe = wiped.is_set()
            resp = await _buy(client, pid, user=f"w{worker}-{n}-{pid}")
            outcome = "accepted" if resp.status_code == 202 else resp.json()["error"]["code"]
            outcomes.append(outcome)
            if started_after_wipe:
                after_wipe.append(outcome)

    async def accepted_at_least(n: int) -> bool:
        return outcomes.count("accepted") >= n

    buyers = [asyncio.create_task(crowd(i)) for i in range(8)]
    try:
        await eventually(lambda: accepted_at_least(10), what="the first sales")
        stack.reconciler.signal(signal.SIGSTOP)  # no recovery until we say so
        try:
            await redis.flushdb()  # Redis restarted empty
            wiped.set()
            during = await _buy(client, pid)
            assert during.status_code == 409
            assert during.json()["error"]["code"] == "deal_not_active"

            async def refusals_seen() -> bool:
                return after_wipe.count("deal_not_active") >= 20
            await eventually(refusals_seen, what="refusals while Redis is empty")
            # Requests already past their reservation may still finish; none started
            # after the wipe is accepted until the state is rebuilt.
            assert set(after_wipe) == {"deal_not_active"}, set(after_wipe)
        finally:
            wiped.clear()
            stack.reconciler.signal(signal.SIGCONT)
        mark = len(outcomes)

        async def sales_resumed() -> bool:
            return "accepted" in outcomes[mark:] or "sold_out" in outcomes[mark:]
        await eventually(sales_resumed, 60, "sales to resume after the rebuild")
        await eventually(lambda: _sold_out_seen(outcomes), 60, "the deal to sell out")
    finally:
        stop.set()
        await asyncio.gather(*buyers)

    async with ctx.engine.connect() as conn:
        sold = await _sold_units(conn, deal_id)
        epoch = (await conn.execute(select(hot_deals.c.epoch).where(
            hot_deals.c.id == deal_id))).scalar_one()
    assert sold == outcomes.count("accepted") == stock  # all sold, none oversold
    assert epoch >= 2
    await _assert_audit_holds(ctx, deal_id)


async def _sold_out_seen(outcomes: list[str]) -> bool:
    return "sold_out" in outcomes[-20:]


async def _sold_units(conn: AsyncConnection, deal_id: int) -> int:
    return int((await conn.execute(select(func.coalesce(func.sum(orders.c.quantity), 0)).where(
        orders.c.hot_deal_id == deal_id,
        orders.c.status.in_(("PENDING", "CONFIRMED"))))).scalar_one())


@asynccontextmanager
async def _crashing_api(stack: Stack) -> AsyncIterator[Proc]:
    api = api_proc("order-api-crash", stack.run_dir, FAULT_HOOK="tests.faults:kill_after_reserve")
    api.start().wait_ready(60)
    try:
        yield api
    finally:
        api.stop()


@pytest.mark.timeout(120)
async def test_api_killed_between_reservation_and_write_leaves_no_stock_behind(
        ctx: Context, client: httpx.AsyncClient, stack: Stack) -> None:
    pid = await start_hot_deal(ctx, client, 2)
    deal_id = await latest_deal_id(ctx, pid)
    async with _crashing_api(stack) as crashing, httpx.AsyncClient(
            base_url=crashing.api_url, timeout=10) as doomed:
        with pytest.raises(httpx.TransportError):
            await _buy(doomed, pid)  # the process dies with SIGKILL after reserving

        async def died() -> bool:
            return not crashing.alive()
        await eventually(died, what="the API to die")
    snap = await ctx.stock.snapshot(pid)
    assert snap.stock == 1 and len(snap.reservations) == 1  # an orphan reservation
    orphan = snap.reservations[0].order_id

    async def released() -> bool:
        return (await ctx.stock.snapshot(pid)).stock == 2
    await eventually(released, 60, "the orphan to be released")
    async with ctx.engine.connect() as conn:
        row = (await conn.execute(select(orders.c.status, orders.c.cancel_reason).where(
            orders.c.id == orphan))).one()
    assert tuple(row) == ("CANCELLED", "orphaned")
    await _assert_audit_holds(ctx, deal_id)


@asynccontextmanager
async def _deal_row_share_locked(ctx: Context, deal_id: int) -> AsyncIterator[None]:
    """Hold FOR KEY SHARE on the deal row: a flush blocks on its FOR UPDATE meanwhile."""
    async with ctx.engine.connect() as conn:
        tx = await conn.begin()
        await conn.execute(text("SELECT 1 FROM hot_deals WHERE id = :d FOR KEY SHARE"),
                           {"d": deal_id})
        try:
            yield
        finally:
            await tx.rollback()


async def _flush_waiting(ctx: Context) -> Any:
    async with ctx.engine.connect() as conn:
        return (await conn.execute(text(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
            "AND query ILIKE '%FROM hot_deals%FOR UPDATE%'"))).scalar_one()


@pytest.mark.timeout(180)
async def test_reconciler_killed_during_a_flush_completes_it_once_after_restart(
        ctx: Context, client: httpx.AsyncClient, stack: Stack) -> None:
    pid = await start_hot_deal(ctx, client, 5)
    deal_id = await latest_deal_id(ctx, pid)
    await pay(client, (await _buy(client, pid)).json())
    async with _deal_row_share_locked(ctx, deal_id):
        await client.post(f"/products/{pid}/hotdeal/end", headers=ADMIN_HEADERS)
        await eventually(lambda: _flush_waiting(ctx), 60, "the flush to start")
        stack.reconciler.signal(signal.SIGKILL)  # dies mid-flush, offset uncommitted

        async def dead() -> bool:
            return not stack.reconciler.alive()
        await eventually(dead, what="the reconciler to die")
    assert await _deal_status(ctx, deal_id) == "ENDED"
    stack.reconciler.start().wait_ready(90)
    await _reconciled(ctx, deal_id)
    assert await _product_stock(ctx, pid) == 4
    async with ctx.engine.connect() as conn:
        rows = (await conn.execute(select(func.count()).select_from(reconciliations).where(
            reconciliations.c.hot_deal_id == deal_id))).scalar_one()
    assert rows == 1
    await _assert_audit_holds(ctx, deal_id)
