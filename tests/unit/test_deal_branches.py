"""Every branch of starting and ending a deal (end_due_deals above all) and of its audit,
on the fakes (tests/fakes/deal_setup.py): no services."""

from __future__ import annotations

import uuid

import pytest
from redis.exceptions import ConnectionError as RedisDown

from hotdeal_core.domain import DealStatus
from hotdeal_core.errors import Conflict
from hotdeal_core.ports.deals import Deal
from hotdeal_core.usecases.audit import audit_deal
from hotdeal_core.usecases.deals import StartDeal, end_due_deals, start_deal
from hotdeal_core.usecases.flush import flush_deal
from tests.fakes.deal_setup import (
    due_deals,
    ended_deal,
    fake_ctx,
    fake_db,
    fake_store,
    open_deal,
    place,
)
from tests.random_refs import random_user


async def test_no_deal_is_ended_when_none_is_due() -> None:
    ctx = fake_ctx()
    pid, deal_id = await open_deal(ctx, duration=60)
    _, forever = await open_deal(ctx)
    assert await end_due_deals(ctx) == []
    assert (await ctx.stock.peek(pid)).status == "open"
    db = fake_db(ctx)
    assert db.event_types(deal_id) == db.event_types(forever) == ["HotDealStarted"]


async def test_a_due_deal_is_closed_in_redis_ended_and_announced_once() -> None:
    ctx = fake_ctx()
    [(pid, deal_id)] = await due_deals(ctx, 1)
    assert await end_due_deals(ctx) == [deal_id]
    assert (await ctx.stock.peek(pid)).status == "closed"
    assert (await ctx.deals_db.deal(deal_id)).status is DealStatus.ENDED
    [ended] = [e for e in fake_db(ctx).events if e.type == "HotDealEnded"]
    assert ended.model_dump()["reason"] == "duration_over"
    assert await end_due_deals(ctx) == []  # ended: not due any more


async def test_several_due_deals_are_all_ended_in_one_round() -> None:
    ctx = fake_ctx()
    due = await due_deals(ctx, 3)
    assert await end_due_deals(ctx) == [deal_id for _, deal_id in due]


async def test_a_due_deal_ended_by_another_replica_meanwhile_is_not_ended_twice() -> None:
    ctx = fake_ctx()
    [(_, first), (_, second)] = await due_deals(ctx, 2)
    db = fake_db(ctx)
    listed = db.due_deals

    async def raced() -> list[Deal]:
        due = await listed()
        await db.mark_ended(due[0], "duration_over")  # the other replica, between the reads
        return due
    db.due_deals = raced  # type: ignore[method-assign]
    assert await end_due_deals(ctx) == [second]
    assert db.event_types(first) == ["HotDealStarted", "HotDealEnded"]


async def test_a_due_deal_replaced_meanwhile_never_ends_its_products_next_deal() -> None:
    ctx = fake_ctx()
    [(pid, old)] = await due_deals(ctx, 1)
    db = fake_db(ctx)
    listed = db.due_deals

    async def replaced() -> list[Deal]:
        due = await listed()
        await flush_deal(ctx, old)  # another replica ended and flushed it...
        await start_deal(ctx, StartDeal(pid, 5, 1))  # ...and the product's next deal opened
        return due
    db.due_deals = replaced  # type: ignore[method-assign]
    assert await end_due_deals(ctx) == []
    live = await db.live_deal(pid)
    assert live is not None and live.status is DealStatus.ACTIVE
    assert (await ctx.stock.peek(pid)).status == "open"


async def test_a_due_deal_that_fails_to_end_does_not_stop_the_others() -> None:
    ctx = fake_ctx()
    [(broken_pid, broken), (_, fine)] = await due_deals(ctx, 2)
    store = fake_store(ctx)
    close = store.close

    async def unreachable(product_id: int, deal_id: int) -> bool:
        if product_id == broken_pid:
            raise RedisDown("this deal's Redis node is unreachable")
        return await close(product_id, deal_id)
    store.close = unreachable  # type: ignore[method-assign]
    assert await end_due_deals(ctx) == [fine]
    assert (await ctx.deals_db.deal(broken)).status is DealStatus.ACTIVE
    store.close = close  # type: ignore[method-assign]
    assert await end_due_deals(ctx) == [broken]  # the next round


async def test_a_start_drops_the_redis_state_left_by_a_flushed_deal() -> None:
    ctx = fake_ctx()
    pid, old = await open_deal(ctx, stock=5)
    await flush_deal(ctx, old)
    await ctx.stock.open(pid, old, 5, 1, epoch=1, unit_price=700)  # keys a crash left behind
    started = await start_deal(ctx, StartDeal(pid, 3, 1))
    snap = await ctx.stock.peek(pid)
    assert (snap.deal_id, snap.stock, snap.epoch) == (started.deal_id, 3, 1)


async def test_a_start_over_redis_state_of_a_live_deal_is_a_conflict() -> None:
    ctx = fake_ctx()
    pid, deal_id = await open_deal(ctx, stock=5)
    await ctx.deals_db.mark_ended(await ctx.deals_db.deal(deal_id), "stopped")  # not flushed
    with pytest.raises(Conflict) as live:
        await start_deal(ctx, StartDeal(pid, 3, 1))
    assert live.value.code == "deal_already_active"
    assert (await ctx.stock.peek(pid)).deal_id == deal_id


async def test_a_start_refused_by_postgres_opens_nothing_in_redis() -> None:
    ctx = fake_ctx()
    pid = fake_db(ctx).add_product(2)
    with pytest.raises(Conflict) as short:
        await start_deal(ctx, StartDeal(pid, 3, 1))
    assert short.value.code == "insufficient_stock"
    assert (await ctx.stock.peek(pid)).status is None


async def test_the_audit_of_a_live_deal_counts_in_flight_units() -> None:
    ctx = fake_ctx()
    pid, deal_id = await open_deal(ctx, stock=10)
    await place(ctx, pid, deal_id, 2)
    await ctx.stock.reserve(pid, uuid.uuid4(), random_user(), 1, None)  # no row yet
    audit = await audit_deal(ctx, deal_id)
    assert (audit.on_sale, audit.pending, audit.in_flight, audit.balanced) == (7, 2, 1, True)


async def test_the_audit_of_a_reconciled_deal_counts_what_was_given_back() -> None:
    ctx = fake_ctx()
    _, deal_id, _ = await ended_deal(ctx, stock=10)
    await flush_deal(ctx, deal_id)
    audit = await audit_deal(ctx, deal_id)
    assert (audit.status, audit.on_sale, audit.in_flight, audit.balanced) == (
        "RECONCILED", 7, 0, True)
