"""Every branch of ending, recovering, flushing and auditing a deal, on the fakes (the deals
port's tests/fakes/deals.py and the stock store's FakeStockStore): no services."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from datetime import timedelta
from uuid import UUID

import pytest
from redis.exceptions import ConnectionError as RedisDown
from redis.exceptions import TimeoutError as RedisTimeout
from sqlalchemy.ext.asyncio import create_async_engine

from hotdeal_core.domain import DealStatus, OrderStatus
from hotdeal_core.errors import Conflict
from hotdeal_core.ports.deals import Deal
from hotdeal_core.settings import Settings
from hotdeal_core.stock.fake import FakeStockStore
from hotdeal_core.stock.port import RebuiltState, ReserveOutcome
from hotdeal_core.usecases.audit import audit_deal
from hotdeal_core.usecases.context import Context
from hotdeal_core.usecases.deals import StartDeal, end_due_deals, start_deal
from hotdeal_core.usecases.flush import STUCK_AFTER_SECONDS, flush_deal, flush_stuck
from hotdeal_core.usecases.recovery import recover_deal, recover_lost_states
from tests.fakes.deals import FakeDeals
from tests.random_refs import random_user

# Never connected: the use cases under test reach Postgres only through ctx.deals_db.
_NO_POSTGRES = create_async_engine("postgresql+asyncpg://unused@127.0.0.1:1/unused")


def _ctx(stock: FakeStockStore | None = None, *, redis: bool = True) -> Context:
    settings = Settings(_env_file=None, hotdeal_stock_redis=redis)
    return Context(engine=_NO_POSTGRES, stock=stock or FakeStockStore(), settings=settings,
                   deals_db=FakeDeals())


def _db(ctx: Context) -> FakeDeals:
    assert isinstance(ctx.deals_db, FakeDeals)
    return ctx.deals_db


def _store(ctx: Context) -> FakeStockStore:
    assert isinstance(ctx.stock, FakeStockStore)
    return ctx.stock


async def _deal(ctx: Context, stock: int = 10, duration: float | None = None) -> tuple[int, int]:
    pid = _db(ctx).add_product(100, price=700)
    return pid, (await start_deal(ctx, StartDeal(pid, stock, 2, duration))).deal_id


async def _order(ctx: Context, pid: int, deal_id: int, quantity: int = 1,
                 status: OrderStatus = OrderStatus.PENDING, key: str | None = None) -> UUID:
    """As place_order: the reservation, then its order row."""
    order_id, user = uuid.uuid4(), random_user()
    reserved = await ctx.stock.reserve(pid, order_id, user, quantity, key)
    assert reserved.outcome is ReserveOutcome.RESERVED
    return _db(ctx).add_order(deal_id, quantity, status, user, key, order_id)


def _lose_reservation(ctx: Context, pid: int, order_id: UUID) -> None:
    """Undo one reservation in the store, as a promoted replica that never received it."""
    deal = _store(ctx).deals[pid]
    lost = deal.res.pop(order_id)
    deal.since.pop(order_id)
    deal.users[lost.user_id] -= lost.quantity
    deal.stock += lost.quantity


async def _due(ctx: Context, n: int) -> list[tuple[int, int]]:
    deals = [await _deal(ctx, duration=60) for _ in range(n)]
    _db(ctx).clock_offset += _minutes(2)
    return deals


def _minutes(n: int) -> timedelta:
    return timedelta(minutes=n)


# -- end_due_deals

async def test_no_deal_is_ended_when_none_is_due() -> None:
    ctx = _ctx()
    pid, deal_id = await _deal(ctx, duration=60)
    _, forever = await _deal(ctx)
    assert await end_due_deals(ctx) == []
    assert (await ctx.stock.peek(pid)).status == "open"
    assert _db(ctx).event_types(deal_id) == _db(ctx).event_types(forever) == ["HotDealStarted"]


async def test_a_due_deal_is_closed_in_redis_ended_and_announced_once() -> None:
    ctx = _ctx()
    [(pid, deal_id)] = await _due(ctx, 1)
    assert await end_due_deals(ctx) == [deal_id]
    assert (await ctx.stock.peek(pid)).status == "closed"
    assert (await ctx.deals_db.deal(deal_id)).status is DealStatus.ENDED
    [ended] = [e for e in _db(ctx).events if e.type == "HotDealEnded"]
    assert ended.model_dump()["reason"] == "duration_over"
    assert await end_due_deals(ctx) == []  # ended: not due any more


async def test_several_due_deals_are_all_ended_in_one_round() -> None:
    ctx = _ctx()
    due = await _due(ctx, 3)
    assert await end_due_deals(ctx) == [deal_id for _, deal_id in due]


async def test_a_due_deal_ended_by_another_replica_meanwhile_is_not_ended_twice() -> None:
    ctx = _ctx()
    [(_, first), (_, second)] = await _due(ctx, 2)
    db = _db(ctx)
    listed = db.due_deals

    async def raced() -> list[Deal]:
        due = await listed()
        await db.mark_ended(due[0], "duration_over")  # the other replica, between the reads
        return due
    db.due_deals = raced  # type: ignore[method-assign]
    assert await end_due_deals(ctx) == [second]
    assert db.event_types(first) == ["HotDealStarted", "HotDealEnded"]


async def test_a_due_deal_replaced_meanwhile_never_ends_its_products_next_deal() -> None:
    ctx = _ctx()
    [(pid, old)] = await _due(ctx, 1)
    db = _db(ctx)
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
    ctx = _ctx()
    [(broken_pid, broken), (_, fine)] = await _due(ctx, 2)
    store = _store(ctx)
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


# -- recover_deal and recover_lost_states

async def test_recovering_a_product_without_an_active_deal_is_a_conflict() -> None:
    ctx = _ctx()
    with pytest.raises(Conflict) as none:
        await recover_deal(ctx, _db(ctx).add_product(1))
    assert none.value.code == "deal_not_active"


async def test_recovering_a_deal_whose_stock_is_in_postgres_is_a_conflict() -> None:
    ctx = _ctx(redis=False)
    pid, _ = await _deal(ctx)
    with pytest.raises(Conflict) as db_deal:
        await recover_deal(ctx, pid)
    assert db_deal.value.code == "invalid_state"


async def test_a_healthy_state_is_never_rebuilt_whatever_is_in_flight() -> None:
    ctx = _ctx()
    pid, deal_id = await _deal(ctx)
    await _order(ctx, pid, deal_id)
    await _order(ctx, pid, deal_id, status=OrderStatus.CONFIRMED)
    in_flight = await ctx.stock.reserve(pid, uuid.uuid4(), random_user(), 1, None)
    assert in_flight.outcome is ReserveOutcome.RESERVED  # no order row yet
    assert await recover_lost_states(ctx) == []
    assert (await ctx.deals_db.deal(deal_id)).epoch == (await ctx.stock.peek(pid)).epoch == 1


async def test_a_lost_state_is_rebuilt_from_the_orders_under_a_new_epoch() -> None:
    ctx = _ctx()
    pid, deal_id = await _deal(ctx, stock=10)
    pending = await _order(ctx, pid, deal_id, 2, key="k1")
    await _order(ctx, pid, deal_id, 1, OrderStatus.CONFIRMED)
    await _order(ctx, pid, deal_id, 1, OrderStatus.CANCELLED)
    await ctx.stock.drop(pid, deal_id)  # Redis restarted empty

    [report] = await recover_lost_states(ctx)
    assert (report.deal_id, report.epoch, report.stock, report.reservations) == (
        deal_id, 2, 7, 1)  # the cancelled order's unit is on sale again
    assert report.reason == "no Redis state for this deal"
    snap = await ctx.stock.snapshot(pid)
    assert (snap.status, snap.epoch, snap.stock) == ("open", 2, 7)
    assert [r.order_id for r in snap.reservations] == [pending]
    assert (await ctx.deals_db.deal(deal_id)).epoch == 2
    user = _db(ctx).orders[pending].user_id
    assert await ctx.stock.key_used(pid, user, "k1")  # its idempotency key answers again


async def test_lost_reservations_are_found_and_rebuilt_once() -> None:
    ctx = _ctx()
    pid, deal_id = await _deal(ctx, stock=10)
    placed = [await _order(ctx, pid, deal_id) for _ in range(3)]
    _lose_reservation(ctx, pid, placed[0])
    assert (await ctx.stock.peek(pid)).stock == 8  # one unit offered twice

    [report] = await recover_lost_states(ctx)
    assert "reservations lost" in report.reason and report.epoch == 2
    snap = await ctx.stock.snapshot(pid)
    assert snap.stock == 7 and {r.order_id for r in snap.reservations} == set(placed)
    assert await recover_lost_states(ctx) == []  # rebuilt once, then healthy


@pytest.mark.parametrize("redis_epoch, rebuilt_at", [(0, 2), (3, 4)])
async def test_a_state_of_another_epoch_is_rebuilt_above_both_epochs(
        redis_epoch: int, rebuilt_at: int) -> None:
    ctx = _ctx()
    pid, deal_id = await _deal(ctx)
    _store(ctx).deals[pid].epoch = redis_epoch  # a lost rebuild, or a lost epoch commit
    [report] = await recover_lost_states(ctx)
    assert report.reason.startswith("Redis state of epoch") and report.epoch == rebuilt_at
    assert (await ctx.deals_db.deal(deal_id)).epoch == (await ctx.stock.peek(pid)).epoch


async def test_a_false_alarm_of_the_unfenced_check_is_not_rebuilt() -> None:
    ctx = _ctx()
    pid, deal_id = await _deal(ctx, stock=10)
    db = _db(ctx)
    counted = db.sold_units

    async def order_in_between(deal: int) -> int:
        await _order(ctx, pid, deal_id)  # reserved and written after the peek
        return await counted(deal)
    db.sold_units = order_in_between  # type: ignore[assignment, method-assign]
    assert await recover_lost_states(ctx) == []
    assert (await ctx.deals_db.deal(deal_id)).epoch == 1


async def test_asking_for_a_recover_rebuilds_even_a_healthy_state() -> None:
    ctx = _ctx()
    pid, deal_id = await _deal(ctx, stock=4)
    await _order(ctx, pid, deal_id)
    report = await recover_deal(ctx, pid)
    assert (report.epoch, report.stock, report.reservations, report.reason) == (
        2, 3, 1, "asked for")


async def test_a_rebuild_that_never_reached_redis_leaves_orders_fenced_until_the_next_round(
        ) -> None:
    ctx = _ctx()
    pid, deal_id = await _deal(ctx, stock=4)
    store = _store(ctx)
    rebuild = store.rebuild

    async def down(product_id: int, state: RebuiltState) -> bool:
        raise RedisDown("Connection refused")
    store.rebuild = down  # type: ignore[method-assign]
    with pytest.raises(RedisDown):
        await recover_deal(ctx, pid)
    assert (await ctx.deals_db.deal(deal_id)).epoch == 2  # committed first, on its own
    assert (await ctx.stock.peek(pid)).epoch == 1  # older than the deal's: orders refused

    store.rebuild = rebuild  # type: ignore[method-assign]
    [report] = await recover_lost_states(ctx)
    assert report.epoch == 3 == (await ctx.stock.peek(pid)).epoch
    reserved = await ctx.stock.reserve(pid, uuid.uuid4(), random_user(), 1, None)
    assert reserved.outcome is ReserveOutcome.RESERVED and reserved.epoch == 3


async def test_a_rebuild_whose_reply_was_lost_leaves_the_deal_usable() -> None:
    ctx = _ctx()
    pid, deal_id = await _deal(ctx, stock=4)
    store = _store(ctx)
    rebuild = store.rebuild

    async def reply_lost(product_id: int, state: RebuiltState) -> bool:
        await rebuild(product_id, state)
        raise RedisTimeout("Timeout reading from socket")
    store.rebuild = reply_lost  # type: ignore[method-assign]
    with pytest.raises(RedisTimeout):
        await recover_deal(ctx, pid)
    store.rebuild = rebuild  # type: ignore[method-assign]
    assert (await ctx.deals_db.deal(deal_id)).epoch == (await ctx.stock.peek(pid)).epoch == 2
    assert await recover_lost_states(ctx) == []
    reserved = await ctx.stock.reserve(pid, uuid.uuid4(), random_user(), 1, None)
    assert reserved.outcome is ReserveOutcome.RESERVED and reserved.epoch == 2


async def test_a_deal_ended_during_its_rebuild_is_not_rebuilt() -> None:
    ctx = _ctx()
    pid, deal_id = await _deal(ctx)
    _ended_after_first_lock(ctx, deal_id)
    with pytest.raises(Conflict) as ended:
        await recover_deal(ctx, pid)
    assert ended.value.code == "deal_not_active"
    assert (await ctx.stock.peek(pid)).epoch == 1


async def test_a_deal_rebuilt_by_another_replica_meanwhile_is_left_to_it() -> None:
    ctx = _ctx()
    pid, _ = await _deal(ctx)
    db = _db(ctx)
    lock = db.locked
    entered: list[int] = []

    def locked(deal: int) -> object:
        if len(entered) == 1:
            db.update(deal, epoch=db.deals[deal].epoch + 1)  # its epoch committed meanwhile
        entered.append(deal)
        return lock(deal)
    db.locked = locked  # type: ignore[assignment, method-assign]
    with pytest.raises(Conflict) as raced:
        await recover_deal(ctx, pid)
    assert raced.value.code == "invalid_state"


async def test_one_deal_failing_its_recovery_does_not_stop_the_others() -> None:
    ctx = _ctx()
    broken_pid, _ = await _deal(ctx)
    fine_pid, fine = await _deal(ctx)
    for pid in (broken_pid, fine_pid):
        _store(ctx).deals.pop(pid)  # both lost
    store = _store(ctx)
    peek = store.peek

    async def unreachable(product_id: int) -> object:
        if product_id == broken_pid:
            raise RedisDown("this deal's Redis node is unreachable")
        return await peek(product_id)
    store.peek = unreachable  # type: ignore[assignment, method-assign]
    assert [r.deal_id for r in await recover_lost_states(ctx)] == [fine]


def _ended_after_first_lock(ctx: Context, deal_id: int) -> None:
    """The deal ends between the epoch's commit and the rebuild's lock."""
    db = _db(ctx)
    lock = db.locked
    calls: list[int] = []

    def locked(deal: int) -> object:
        if calls:
            db.update(deal, status=DealStatus.ENDED)
        calls.append(deal)
        return lock(deal)
    db.locked = locked  # type: ignore[assignment, method-assign]


# -- flush_deal and flush_stuck

async def _ended(ctx: Context, stock: int = 10) -> tuple[int, int, list[UUID]]:
    """A deal with one PENDING (2 units), one CONFIRMED and one CANCELLED order, ended."""
    pid, deal_id = await _deal(ctx, stock=stock)
    orders = [await _order(ctx, pid, deal_id, 2),
              await _order(ctx, pid, deal_id, 1, OrderStatus.CONFIRMED)]
    cancelled = await _order(ctx, pid, deal_id, 1)
    await ctx.stock.release(pid, cancelled)
    _db(ctx).orders[cancelled].status = OrderStatus.CANCELLED
    await ctx.deals_db.mark_ended(await ctx.deals_db.deal(deal_id), "stopped")
    return pid, deal_id, orders


async def test_a_flush_gives_back_what_the_orders_did_not_sell_and_reports_balanced() -> None:
    ctx = _ctx()
    pid, deal_id, _ = await _ended(ctx, stock=10)
    report = await flush_deal(ctx, deal_id)
    assert (report.returned, report.pending, report.confirmed, report.balanced,
            report.already) == (7, 2, 1, True, False)
    assert _db(ctx).products[pid].stock == 90 + 7
    assert (await ctx.deals_db.deal(deal_id)).status is DealStatus.RECONCILED
    assert _db(ctx).event_types(deal_id)[-1] == "HotDealReconciled"
    assert (await ctx.stock.peek(pid)).status is None  # the Redis keys are dropped


async def test_a_second_flush_returns_the_stored_report_and_gives_nothing_back() -> None:
    ctx = _ctx()
    pid, deal_id, _ = await _ended(ctx)
    first = await flush_deal(ctx, deal_id)
    again = await flush_deal(ctx, deal_id)
    assert again.already and (again.returned, again.balanced) == (first.returned, True)
    assert _db(ctx).products[pid].stock == 97
    assert _db(ctx).event_types(deal_id).count("HotDealReconciled") == 1


async def test_flushing_an_active_deal_ends_it_first() -> None:
    ctx = _ctx()
    pid, deal_id = await _deal(ctx, stock=5)
    report = await flush_deal(ctx, deal_id)
    assert (report.returned, report.balanced) == (5, True)
    assert (await ctx.stock.peek(pid)).status is None
    assert _db(ctx).event_types(deal_id) == [
        "HotDealStarted", "HotDealEnded", "HotDealReconciled"]


async def test_orphaned_and_cancelled_reservations_still_held_balance_the_flush() -> None:
    ctx = _ctx()
    pid, deal_id, _ = await _ended(ctx, stock=10)
    store = _store(ctx).deals[pid]
    orphan = await _reserve_while_closed(ctx, pid, 1)  # reserved, no order row
    late = await _reserve_while_closed(ctx, pid, 1)
    _db(ctx).add_order(deal_id, 1, OrderStatus.CANCELLED, order_id=late)  # not released yet
    assert orphan in store.res and late in store.res
    report = await flush_deal(ctx, deal_id)
    assert (report.returned, report.redis_stock, report.balanced) == (7, 5, True)
    rec = _db(ctx).reconciliations[deal_id]
    assert (rec.orphans_released, rec.cancelled_released) == (1, 1)


async def _reserve_while_closed(ctx: Context, pid: int, quantity: int) -> UUID:
    deal = _store(ctx).deals[pid]
    deal.status = "open"
    order_id = uuid.uuid4()
    assert (await ctx.stock.reserve(pid, order_id, random_user(), quantity, None)).outcome \
        is ReserveOutcome.RESERVED
    deal.status = "closed"
    return order_id


async def test_a_flush_without_redis_state_returns_by_the_orders_and_is_not_balanced() -> None:
    ctx = _ctx()
    pid, deal_id, _ = await _ended(ctx, stock=10)
    await ctx.stock.drop(pid, deal_id)
    report = await flush_deal(ctx, deal_id)
    assert (report.returned, report.balanced) == (7, False)
    assert _db(ctx).reconciliations[deal_id].details is not None


async def test_a_flush_of_a_deal_whose_stock_is_in_postgres_balances_its_hot_row() -> None:
    ctx = _ctx(redis=False)
    pid, deal_id = await _deal(ctx, stock=6)
    _db(ctx).add_order(deal_id, 2)
    _db(ctx).update(deal_id, remaining_stock=4)
    report = await flush_deal(ctx, deal_id)
    assert (report.returned, report.redis_stock, report.balanced) == (4, 4, True)
    assert _db(ctx).products[pid].stock == 94 + 4


async def test_a_flush_that_fails_before_its_commit_gives_back_nothing_and_can_run_again(
        ) -> None:
    ctx = _ctx()
    pid, deal_id, _ = await _ended(ctx)
    _db(ctx).fail_next("reconcile", ConnectionError("Postgres went away"))
    with pytest.raises(ConnectionError):
        await flush_deal(ctx, deal_id)
    assert _db(ctx).products[pid].stock == 90
    assert (await ctx.deals_db.deal(deal_id)).status is DealStatus.ENDED
    assert (await flush_deal(ctx, deal_id)).returned == 7
    assert _db(ctx).products[pid].stock == 97


async def test_flush_stuck_flushes_only_deals_ended_a_while_ago() -> None:
    ctx = _ctx()
    _, old, _ = await _ended(ctx)
    _db(ctx).clock_offset += _minutes(1)
    _, recent, _ = await _ended(ctx)
    _, active = await _deal(ctx)
    assert STUCK_AFTER_SECONDS < 60
    assert [r.deal_id for r in await flush_stuck(ctx)] == [old]
    assert (await ctx.deals_db.deal(recent)).status is DealStatus.ENDED
    assert (await ctx.deals_db.deal(active)).status is DealStatus.ACTIVE


async def test_a_stuck_deal_that_fails_to_flush_does_not_stop_the_others() -> None:
    ctx = _ctx()
    broken_pid, broken, _ = await _ended(ctx)
    _, fine, _ = await _ended(ctx)
    _db(ctx).clock_offset += _minutes(1)
    _failing(ctx, "snapshot", broken_pid)
    assert [r.deal_id for r in await flush_stuck(ctx)] == [fine]
    assert (await ctx.deals_db.deal(broken)).status is DealStatus.ENDED


def _failing(ctx: Context, method: str, product_id: int) -> None:
    store = _store(ctx)
    real: Callable[..., Awaitable[object]] = getattr(store, method)

    async def call(pid: int, *args: object) -> object:
        if pid == product_id:
            raise RedisDown("this deal's Redis node is unreachable")
        return await real(pid, *args)
    setattr(store, method, call)


# -- audit

async def test_the_audit_of_a_live_deal_counts_in_flight_units() -> None:
    ctx = _ctx()
    pid, deal_id = await _deal(ctx, stock=10)
    await _order(ctx, pid, deal_id, 2)
    await ctx.stock.reserve(pid, uuid.uuid4(), random_user(), 1, None)  # no row yet
    audit = await audit_deal(ctx, deal_id)
    assert (audit.on_sale, audit.pending, audit.in_flight, audit.balanced) == (7, 2, 1, True)


async def test_the_audit_of_a_reconciled_deal_counts_what_was_given_back() -> None:
    ctx = _ctx()
    _, deal_id, _ = await _ended(ctx, stock=10)
    await flush_deal(ctx, deal_id)
    audit = await audit_deal(ctx, deal_id)
    assert (audit.status, audit.on_sale, audit.in_flight, audit.balanced) == (
        "RECONCILED", 7, 0, True)


# -- start_deal

async def test_a_start_drops_the_redis_state_left_by_a_flushed_deal() -> None:
    ctx = _ctx()
    pid, old = await _deal(ctx, stock=5)
    await flush_deal(ctx, old)
    await ctx.stock.open(pid, old, 5, 1, epoch=1, unit_price=700)  # keys a crash left behind
    started = await start_deal(ctx, StartDeal(pid, 3, 1))
    snap = await ctx.stock.peek(pid)
    assert (snap.deal_id, snap.stock, snap.epoch) == (started.deal_id, 3, 1)


async def test_a_start_over_redis_state_of_a_live_deal_is_a_conflict() -> None:
    ctx = _ctx()
    pid, deal_id = await _deal(ctx, stock=5)
    await ctx.deals_db.mark_ended(await ctx.deals_db.deal(deal_id), "stopped")  # not flushed
    with pytest.raises(Conflict) as live:
        await start_deal(ctx, StartDeal(pid, 3, 1))
    assert live.value.code == "deal_already_active"
    assert (await ctx.stock.peek(pid)).deal_id == deal_id


async def test_a_start_refused_by_postgres_opens_nothing_in_redis() -> None:
    ctx = _ctx()
    pid = _db(ctx).add_product(2)
    with pytest.raises(Conflict) as short:
        await start_deal(ctx, StartDeal(pid, 3, 1))
    assert short.value.code == "insufficient_stock"
    assert (await ctx.stock.peek(pid)).status is None
