"""Every branch of flush_deal and flush_stuck, on the fakes (tests/fakes/deal_setup.py):
no services."""

from __future__ import annotations

import uuid
from uuid import UUID

import pytest

from hotdeal_core.domain import DealStatus, OrderStatus
from hotdeal_core.stock.port import ReserveOutcome
from hotdeal_core.usecases.context import Context
from hotdeal_core.usecases.flush import STUCK_AFTER_SECONDS, flush_deal, flush_stuck
from tests.fakes.deal_setup import (
    ended_deal,
    failing,
    fake_ctx,
    fake_db,
    fake_store,
    minutes,
    open_deal,
)
from tests.random_refs import random_user


async def test_a_flush_gives_back_what_the_orders_did_not_sell_and_reports_balanced() -> None:
    ctx = fake_ctx()
    pid, deal_id, _ = await ended_deal(ctx, stock=10)
    report = await flush_deal(ctx, deal_id)
    assert (report.returned, report.pending, report.confirmed, report.balanced,
            report.already) == (7, 2, 1, True, False)
    assert fake_db(ctx).products[pid].stock == 90 + 7
    assert (await ctx.deals_db.deal(deal_id)).status is DealStatus.RECONCILED
    assert fake_db(ctx).event_types(deal_id)[-1] == "HotDealReconciled"
    assert (await ctx.stock.peek(pid)).status is None  # the Redis keys are dropped


async def test_a_second_flush_returns_the_stored_report_and_gives_nothing_back() -> None:
    ctx = fake_ctx()
    pid, deal_id, _ = await ended_deal(ctx)
    first = await flush_deal(ctx, deal_id)
    again = await flush_deal(ctx, deal_id)
    assert again.already and (again.returned, again.balanced) == (first.returned, True)
    assert fake_db(ctx).products[pid].stock == 97
    assert fake_db(ctx).event_types(deal_id).count("HotDealReconciled") == 1


async def test_flushing_an_active_deal_ends_it_first() -> None:
    ctx = fake_ctx()
    pid, deal_id = await open_deal(ctx, stock=5)
    report = await flush_deal(ctx, deal_id)
    assert (report.returned, report.balanced) == (5, True)
    assert (await ctx.stock.peek(pid)).status is None
    assert fake_db(ctx).event_types(deal_id) == [
        "HotDealStarted", "HotDealEnded", "HotDealReconciled"]


async def test_orphaned_and_cancelled_reservations_still_held_balance_the_flush() -> None:
    ctx = fake_ctx()
    pid, deal_id, _ = await ended_deal(ctx, stock=10)
    store = fake_store(ctx).deals[pid]
    orphan = await _reserve_while_closed(ctx, pid, 1)  # reserved, no order row
    late = await _reserve_while_closed(ctx, pid, 1)
    fake_db(ctx).add_order(deal_id, 1, OrderStatus.CANCELLED, order_id=late)  # not released yet
    assert orphan in store.res and late in store.res
    report = await flush_deal(ctx, deal_id)
    assert (report.returned, report.redis_stock, report.balanced) == (7, 5, True)
    rec = fake_db(ctx).reconciliations[deal_id]
    assert (rec.orphans_released, rec.cancelled_released) == (1, 1)


async def _reserve_while_closed(ctx: Context, pid: int, quantity: int) -> UUID:
    deal = fake_store(ctx).deals[pid]
    deal.status = "open"
    order_id = uuid.uuid4()
    assert (await ctx.stock.reserve(pid, order_id, random_user(), quantity, None)).outcome \
        is ReserveOutcome.RESERVED
    deal.status = "closed"
    return order_id


async def test_a_flush_without_redis_state_returns_by_the_orders_and_is_not_balanced() -> None:
    ctx = fake_ctx()
    pid, deal_id, _ = await ended_deal(ctx, stock=10)
    await ctx.stock.drop(pid, deal_id)
    report = await flush_deal(ctx, deal_id)
    assert (report.returned, report.balanced) == (7, False)
    assert fake_db(ctx).reconciliations[deal_id].details is not None


async def test_a_flush_of_a_deal_whose_stock_is_in_postgres_balances_its_hot_row() -> None:
    ctx = fake_ctx(redis=False)
    pid, deal_id = await open_deal(ctx, stock=6)
    fake_db(ctx).add_order(deal_id, 2)
    fake_db(ctx).update(deal_id, remaining_stock=4)
    report = await flush_deal(ctx, deal_id)
    assert (report.returned, report.redis_stock, report.balanced) == (4, 4, True)
    assert fake_db(ctx).products[pid].stock == 94 + 4


async def test_a_flush_that_fails_before_its_commit_gives_back_nothing_and_can_run_again(
        ) -> None:
    ctx = fake_ctx()
    pid, deal_id, _ = await ended_deal(ctx)
    fake_db(ctx).fail_next("reconcile", ConnectionError("Postgres went away"))
    with pytest.raises(ConnectionError):
        await flush_deal(ctx, deal_id)
    assert fake_db(ctx).products[pid].stock == 90
    assert (await ctx.deals_db.deal(deal_id)).status is DealStatus.ENDED
    assert (await flush_deal(ctx, deal_id)).returned == 7
    assert fake_db(ctx).products[pid].stock == 97


async def test_flush_stuck_flushes_only_deals_ended_a_while_ago() -> None:
    ctx = fake_ctx()
    _, old, _ = await ended_deal(ctx)
    fake_db(ctx).clock_offset += minutes(1)
    _, recent, _ = await ended_deal(ctx)
    _, active = await open_deal(ctx)
    assert STUCK_AFTER_SECONDS < 60
    assert [r.deal_id for r in await flush_stuck(ctx)] == [old]
    assert (await ctx.deals_db.deal(recent)).status is DealStatus.ENDED
    assert (await ctx.deals_db.deal(active)).status is DealStatus.ACTIVE


async def test_a_stuck_deal_that_fails_to_flush_does_not_stop_the_others() -> None:
    ctx = fake_ctx()
    broken_pid, broken, _ = await ended_deal(ctx)
    _, fine, _ = await ended_deal(ctx)
    fake_db(ctx).clock_offset += minutes(1)
    failing(ctx, "snapshot", broken_pid)
    assert [r.deal_id for r in await flush_stuck(ctx)] == [fine]
    assert (await ctx.deals_db.deal(broken)).status is DealStatus.ENDED
