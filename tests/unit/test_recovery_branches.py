"""Every branch of recover_deal and recover_lost_states, on the fakes
(tests/fakes/deal_setup.py): no services."""

from __future__ import annotations

import uuid

import pytest
from redis.exceptions import ConnectionError as RedisDown
from redis.exceptions import TimeoutError as RedisTimeout

from hotdeal_core.domain import DealStatus, OrderStatus
from hotdeal_core.errors import Conflict
from hotdeal_core.stock.port import RebuiltState, ReserveOutcome
from hotdeal_core.usecases.context import Context
from hotdeal_core.usecases.recovery import recover_deal, recover_lost_states
from tests.fakes.deal_setup import fake_ctx, fake_db, fake_store, lose_reservation, open_deal, place
from tests.random_refs import random_user


async def test_recovering_a_product_without_an_active_deal_is_a_conflict() -> None:
    ctx = fake_ctx()
    with pytest.raises(Conflict) as none:
        await recover_deal(ctx, fake_db(ctx).add_product(1))
    assert none.value.code == "deal_not_active"


async def test_recovering_a_deal_whose_stock_is_in_postgres_is_a_conflict() -> None:
    ctx = fake_ctx(redis=False)
    pid, _ = await open_deal(ctx)
    with pytest.raises(Conflict) as db_deal:
        await recover_deal(ctx, pid)
    assert db_deal.value.code == "invalid_state"


async def test_a_healthy_state_is_never_rebuilt_whatever_is_in_flight() -> None:
    ctx = fake_ctx()
    pid, deal_id = await open_deal(ctx)
    await place(ctx, pid, deal_id)
    await place(ctx, pid, deal_id, status=OrderStatus.CONFIRMED)
    in_flight = await ctx.stock.reserve(pid, uuid.uuid4(), random_user(), 1, None)
    assert in_flight.outcome is ReserveOutcome.RESERVED  # no order row yet
    assert await recover_lost_states(ctx) == []
    assert (await ctx.deals_db.deal(deal_id)).epoch == (await ctx.stock.peek(pid)).epoch == 1


async def test_a_lost_state_is_rebuilt_from_the_orders_under_a_new_epoch() -> None:
    ctx = fake_ctx()
    pid, deal_id = await open_deal(ctx, stock=10)
    pending = await place(ctx, pid, deal_id, 2, key="k1")
    await place(ctx, pid, deal_id, 1, OrderStatus.CONFIRMED)
    await place(ctx, pid, deal_id, 1, OrderStatus.CANCELLED)
    await ctx.stock.drop(pid, deal_id)  # Redis restarted empty

    [report] = await recover_lost_states(ctx)
    assert (report.deal_id, report.epoch, report.stock, report.reservations) == (
        deal_id, 2, 7, 1)  # the cancelled order's unit is on sale again
    assert report.reason == "no Redis state for this deal"
    snap = await ctx.stock.snapshot(pid)
    assert (snap.status, snap.epoch, snap.stock) == ("open", 2, 7)
    assert [r.order_id for r in snap.reservations] == [pending]
    assert (await ctx.deals_db.deal(deal_id)).epoch == 2
    user = fake_db(ctx).orders[pending].user_id
    assert await ctx.stock.key_used(pid, user, "k1")  # its idempotency key answers again


async def test_lost_reservations_are_found_and_rebuilt_once() -> None:
    ctx = fake_ctx()
    pid, deal_id = await open_deal(ctx, stock=10)
    placed = [await place(ctx, pid, deal_id) for _ in range(3)]
    lose_reservation(ctx, pid, placed[0])
    assert (await ctx.stock.peek(pid)).stock == 8  # one unit offered twice

    [report] = await recover_lost_states(ctx)
    assert "reservations lost" in report.reason and report.epoch == 2
    snap = await ctx.stock.snapshot(pid)
    assert snap.stock == 7 and {r.order_id for r in snap.reservations} == set(placed)
    assert await recover_lost_states(ctx) == []  # rebuilt once, then healthy


@pytest.mark.parametrize("redis_epoch, rebuilt_at", [(0, 2), (3, 4)])
async def test_a_state_of_another_epoch_is_rebuilt_above_both_epochs(
        redis_epoch: int, rebuilt_at: int) -> None:
    ctx = fake_ctx()
    pid, deal_id = await open_deal(ctx)
    fake_store(ctx).deals[pid].epoch = redis_epoch  # a lost rebuild, or a lost epoch commit
    [report] = await recover_lost_states(ctx)
    assert report.reason.startswith("Redis state of epoch") and report.epoch == rebuilt_at
    assert (await ctx.deals_db.deal(deal_id)).epoch == (await ctx.stock.peek(pid)).epoch


async def test_a_false_alarm_of_the_unfenced_check_is_not_rebuilt() -> None:
    ctx = fake_ctx()
    pid, deal_id = await open_deal(ctx, stock=10)
    db = fake_db(ctx)
    counted = db.sold_units

    async def order_in_between(deal: int) -> int:
        await place(ctx, pid, deal_id)  # reserved and written after the peek
        return await counted(deal)
    db.sold_units = order_in_between  # type: ignore[assignment, method-assign]
    assert await recover_lost_states(ctx) == []
    assert (await ctx.deals_db.deal(deal_id)).epoch == 1


async def test_asking_for_a_recover_rebuilds_even_a_healthy_state() -> None:
    ctx = fake_ctx()
    pid, deal_id = await open_deal(ctx, stock=4)
    await place(ctx, pid, deal_id)
    report = await recover_deal(ctx, pid)
    assert (report.epoch, report.stock, report.reservations, report.reason) == (
        2, 3, 1, "asked for")


async def test_a_rebuild_that_never_reached_redis_leaves_orders_fenced_until_the_next_round(
        ) -> None:
    ctx = fake_ctx()
    pid, deal_id = await open_deal(ctx, stock=4)
    store = fake_store(ctx)
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
    ctx = fake_ctx()
    pid, deal_id = await open_deal(ctx, stock=4)
    store = fake_store(ctx)
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
    ctx = fake_ctx()
    pid, deal_id = await open_deal(ctx)
    _ended_after_first_lock(ctx, deal_id)
    with pytest.raises(Conflict) as ended:
        await recover_deal(ctx, pid)
    assert ended.value.code == "deal_not_active"
    assert (await ctx.stock.peek(pid)).epoch == 1


async def test_a_deal_rebuilt_by_another_replica_meanwhile_is_left_to_it() -> None:
    ctx = fake_ctx()
    pid, _ = await open_deal(ctx)
    db = fake_db(ctx)
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
    ctx = fake_ctx()
    broken_pid, _ = await open_deal(ctx)
    fine_pid, fine = await open_deal(ctx)
    for pid in (broken_pid, fine_pid):
        fake_store(ctx).deals.pop(pid)  # both lost
    store = fake_store(ctx)
    peek = store.peek

    async def unreachable(product_id: int) -> object:
        if product_id == broken_pid:
            raise RedisDown("this deal's Redis node is unreachable")
        return await peek(product_id)
    store.peek = unreachable  # type: ignore[assignment, method-assign]
    assert [r.deal_id for r in await recover_lost_states(ctx)] == [fine]


def _ended_after_first_lock(ctx: Context, deal_id: int) -> None:
    """The deal ends between the epoch's commit and the rebuild's lock."""
    db = fake_db(ctx)
    lock = db.locked
    calls: list[int] = []

    def locked(deal: int) -> object:
        if calls:
            db.update(deal, status=DealStatus.ENDED)
        calls.append(deal)
        return lock(deal)
    db.locked = locked  # type: ignore[assignment, method-assign]
