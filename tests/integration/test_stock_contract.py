"""The stock store's contract: every case runs against the Redis/Lua store and against the
in-memory fake, so the fake that unit tests rely on cannot drift from the scripts."""

from __future__ import annotations

import asyncio
import random
import uuid

import pytest
from redis.asyncio import Redis

from hotdeal_core.settings import Settings
from hotdeal_core.stock.client import replica_acks
from hotdeal_core.stock.fake import FakeStockStore
from hotdeal_core.stock.port import (
    RebuiltState,
    ReleaseOutcome,
    Reservation,
    ReserveOutcome,
    ReserveRequest,
    StockStore,
)
from hotdeal_core.stock.redis_store import RedisStockStore


@pytest.fixture(params=["redis", "fake"])
def store(request: pytest.FixtureRequest, redis: Redis, settings: Settings) -> StockStore:
    if request.param == "fake":
        return FakeStockStore()
    return RedisStockStore(redis, replica_acks(settings))  # WAIT on a cluster


def _pid() -> int:
    return random.randint(10**9, 2 * 10**9)


async def _opened(store: StockStore, stock: int, limit: int = 1) -> tuple[int, int]:
    pid, deal_id = _pid(), random.randint(1, 10**9)
    assert await store.open(pid, deal_id, stock, limit, epoch=3, unit_price=500)
    return pid, deal_id


async def test_reserve_with_stock_zero_is_sold_out(store: StockStore) -> None:
    pid, _ = await _opened(store, 0)
    result = await store.reserve(pid, uuid.uuid4(), "u1", 1, None)
    assert result.outcome is ReserveOutcome.SOLD_OUT and result.remaining == 0


async def test_reserve_with_stock_one_sells_exactly_once(store: StockStore) -> None:
    pid, deal_id = await _opened(store, 1)
    first = await store.reserve(pid, uuid.uuid4(), "u1", 1, None)
    second = await store.reserve(pid, uuid.uuid4(), "u2", 1, None)
    assert first.outcome is ReserveOutcome.RESERVED
    assert (first.epoch, first.remaining, first.deal_id, first.unit_price) == (3, 0, deal_id, 500)
    assert second.outcome is ReserveOutcome.SOLD_OUT


async def test_reserve_with_stock_n_under_concurrency_never_oversells(store: StockStore) -> None:
    pid, _ = await _opened(store, 50)
    results = await asyncio.gather(*(store.reserve(pid, uuid.uuid4(), f"u{i}", 1, None)
                                     for i in range(500)))
    outcomes = [r.outcome for r in results]
    assert outcomes.count(ReserveOutcome.RESERVED) == 50
    assert outcomes.count(ReserveOutcome.SOLD_OUT) == 450
    snap = await store.snapshot(pid)
    assert snap.stock == 0 and len(snap.reservations) == 50


async def test_repeat_buyer_is_refused_over_the_per_user_limit(store: StockStore) -> None:
    pid, _ = await _opened(store, 10, limit=2)
    assert (await store.reserve(pid, uuid.uuid4(), "u1", 2, None)).outcome \
        is ReserveOutcome.RESERVED
    refused = await store.reserve(pid, uuid.uuid4(), "u1", 1, None)
    assert refused.outcome is ReserveOutcome.LIMIT_EXCEEDED
    assert (refused.held, refused.limit) == (2, 2)
    assert (await store.snapshot(pid)).stock == 8


async def test_repeated_idempotency_key_reserves_nothing_more(store: StockStore) -> None:
    pid, _ = await _opened(store, 10, limit=5)
    first_id = uuid.uuid4()
    assert (await store.reserve(pid, first_id, "u1", 1, "k1")).outcome \
        is ReserveOutcome.RESERVED
    again = await store.reserve(pid, uuid.uuid4(), "u1", 1, "k1")
    assert again.outcome is ReserveOutcome.DUPLICATE and again.first_order_id == first_id
    other_user = await store.reserve(pid, uuid.uuid4(), "u2", 1, "k1")
    assert other_user.outcome is ReserveOutcome.RESERVED  # keys are per user
    assert (await store.snapshot(pid)).stock == 8


async def test_a_repeated_key_finds_its_first_answer_even_when_sold_out(
        store: StockStore) -> None:
    pid, _ = await _opened(store, 1)
    first_id = uuid.uuid4()
    await store.reserve(pid, first_id, "u1", 1, "k1")
    again = await store.reserve(pid, uuid.uuid4(), "u1", 1, "k1")
    assert again.outcome is ReserveOutcome.DUPLICATE and again.first_order_id == first_id


async def test_missing_deal_key_means_not_active_not_an_error(store: StockStore) -> None:
    result = await store.reserve(_pid(), uuid.uuid4(), "u1", 1, None)
    assert result.outcome is ReserveOutcome.NOT_ACTIVE
    assert await store.release(_pid(), uuid.uuid4()) is ReleaseOutcome.NOT_OPEN
    assert (await store.peek(_pid())).status is None


async def test_release_gives_units_back_exactly_once(store: StockStore) -> None:
    pid, _ = await _opened(store, 1)
    order_id = uuid.uuid4()
    await store.reserve(pid, order_id, "u1", 1, None)
    outcomes = await asyncio.gather(*(store.release(pid, order_id) for _ in range(20)))
    assert outcomes.count(ReleaseOutcome.RELEASED) == 1
    assert outcomes.count(ReleaseOutcome.NO_RESERVATION) == 19
    assert (await store.snapshot(pid)).stock == 1
    # The per-user count went back too: the same buyer may buy again under limit 1.
    assert (await store.reserve(pid, uuid.uuid4(), "u1", 1, None)).outcome \
        is ReserveOutcome.RESERVED


async def test_release_drops_the_idempotency_record_of_the_reservation(
        store: StockStore) -> None:
    pid, _ = await _opened(store, 5, limit=5)
    first_id, retry_id = uuid.uuid4(), uuid.uuid4()
    await store.reserve(pid, first_id, "u1", 1, "k1")
    assert await store.release(pid, first_id) is ReleaseOutcome.RELEASED
    retry = await store.reserve(pid, retry_id, "u1", 1, "k1")
    assert retry.outcome is ReserveOutcome.RESERVED  # served anew, not "in progress"
    # A stale release of the first order must not drop the retry's record.
    assert await store.release(pid, first_id) is ReleaseOutcome.NO_RESERVATION
    again = await store.reserve(pid, uuid.uuid4(), "u1", 1, "k1")
    assert again.outcome is ReserveOutcome.DUPLICATE and again.first_order_id == retry_id


async def test_forget_keeps_the_units_sold_and_the_key_answered(store: StockStore) -> None:
    pid, _ = await _opened(store, 5, limit=5)
    order_id = uuid.uuid4()
    await store.reserve(pid, order_id, "u1", 2, "k1")
    assert await store.forget(pid, order_id)
    assert not await store.forget(pid, order_id)
    snap = await store.snapshot(pid)
    assert (snap.stock, snap.reservations) == (3, [])
    again = await store.reserve(pid, uuid.uuid4(), "u1", 1, "k1")
    assert again.outcome is ReserveOutcome.DUPLICATE and again.first_order_id == order_id
    assert await store.release(pid, order_id) is ReleaseOutcome.NO_RESERVATION


async def test_closed_deal_refuses_reservations_and_releases(store: StockStore) -> None:
    pid, deal_id = await _opened(store, 5)
    order_id = uuid.uuid4()
    await store.reserve(pid, order_id, "u1", 1, None)
    assert await store.close(pid, deal_id)
    assert (await store.reserve(pid, uuid.uuid4(), "u2", 1, None)).outcome \
        is ReserveOutcome.NOT_ACTIVE
    assert await store.release(pid, order_id) is ReleaseOutcome.NOT_OPEN
    snap = await store.snapshot(pid)
    assert (snap.status, snap.stock, snap.reserved_units) == ("closed", 4, 1)


async def test_open_never_overwrites_live_state_and_drop_checks_the_owner(
        store: StockStore) -> None:
    pid, deal_id = await _opened(store, 5)
    assert not await store.open(pid, deal_id + 1, 99, 1, epoch=1, unit_price=1)
    assert not await store.drop(pid, deal_id + 1)
    assert (await store.snapshot(pid)).stock == 5
    assert await store.drop(pid, deal_id)
    assert (await store.snapshot(pid)).status is None


async def test_peek_reads_status_and_stock_without_the_reservations(store: StockStore) -> None:
    pid, deal_id = await _opened(store, 5, limit=5)
    await store.reserve(pid, uuid.uuid4(), "u1", 2, None)
    peek = await store.peek(pid)
    assert (peek.status, peek.epoch, peek.deal_id, peek.stock) == ("open", 3, deal_id, 3)
    assert peek.reservations == []


async def test_a_reservation_is_stamped_with_the_stores_own_clock(store: StockStore) -> None:
    pid, _ = await _opened(store, 5)
    order_id = uuid.uuid4()
    before = (await store.due(pid, 0, 0)).now_ms
    await store.reserve(pid, order_id, "u1", 1, None)
    after = (await store.due(pid, 0, 0)).now_ms
    [stamped] = (await store.snapshot(pid)).reservations
    assert before <= stamped.reserved_at_ms <= after
    assert (await store.due(pid, grace_ms=0, limit=10)).reservations == [stamped]
    assert (await store.due(pid, grace_ms=60_000, limit=10)).reservations == []


async def test_due_returns_only_reservations_past_the_grace_period_oldest_first(
        store: StockStore) -> None:
    pid, deal_id = await _opened(store, 10, limit=10)
    ids = [uuid.uuid4() for _ in range(4)]
    for order_id in ids:
        await store.reserve(pid, order_id, "u1", 1, None)
    # Three grace periods started long ago; the fourth reservation is fresh.
    await store.reschedule(pid, {ids[0]: 400, ids[1]: 100, ids[2]: 300})
    due = await store.due(pid, grace_ms=60_000, limit=10)
    assert (due.status, due.deal_id) == ("open", deal_id)
    assert [r.order_id for r in due.reservations] == [ids[1], ids[2], ids[0]]
    assert [r.order_id for r in (await store.due(pid, 60_000, limit=2)).reservations] \
        == [ids[1], ids[2]]


async def test_released_or_forgotten_reservations_are_never_due(store: StockStore) -> None:
    pid, _ = await _opened(store, 10, limit=10)
    released, forgotten, kept = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    for order_id in (released, forgotten, kept):
        await store.reserve(pid, order_id, "u1", 1, None)
    await store.release(pid, released)
    await store.forget(pid, forgotten)
    assert [r.order_id for r in (await store.due(pid, 0, 10)).reservations] == [kept]


async def test_reschedule_postpones_only_reservations_still_held(store: StockStore) -> None:
    pid, _ = await _opened(store, 10, limit=10)
    pending, released = uuid.uuid4(), uuid.uuid4()
    await store.reserve(pid, pending, "u1", 1, None)
    await store.reserve(pid, released, "u1", 1, None)
    await store.release(pid, released)
    later = (await store.due(pid, 0, 0)).now_ms + 3_600_000
    assert await store.reschedule(pid, {pending: later, released: later}) == 1
    assert (await store.due(pid, 0, 10)).reservations == []
    assert await store.reschedule(pid, {pending: 100}) == 1
    assert [r.order_id for r in (await store.due(pid, 60_000, 10)).reservations] == [pending]
    assert (await store.snapshot(pid)).stock == 9  # the released one stayed released


async def test_rebuild_restores_reservations_keys_and_their_due_times(
        store: StockStore) -> None:
    pid, deal_id = await _opened(store, 10, limit=3)
    held = uuid.uuid4()
    state = RebuiltState(deal_id, stock=8, per_user_limit=3, epoch=4, unit_price=500,
                         users={"u1": 2}, reservations=[Reservation(held, "u1", 2, 700, "k1")],
                         idempotency={("u1", "k1"): held})
    assert await store.rebuild(pid, state)
    assert not await store.rebuild(pid, RebuiltState(deal_id, 1, 3, 2, 500, {}, [], {}))
    assert not await store.rebuild(pid, RebuiltState(deal_id, 1, 3, 4, 500, {}, [], {}))  # same
    again = await store.reserve(pid, uuid.uuid4(), "u1", 1, "k1")
    assert again.outcome is ReserveOutcome.DUPLICATE and again.first_order_id == held
    assert [r.order_id for r in (await store.due(pid, 60_000, 10)).reservations] == [held]
    assert (await store.reserve(pid, uuid.uuid4(), "u1", 2, None)).outcome \
        is ReserveOutcome.LIMIT_EXCEEDED
    assert await store.release(pid, held) is ReleaseOutcome.RELEASED
    assert (await store.peek(pid)).stock == 10


async def test_reserve_many_gives_each_buyer_the_outcome_of_calls_in_a_row(
        store: StockStore) -> None:
    pid, deal_id = await _opened(store, 3, limit=2)
    first = uuid.uuid4()
    requests = [ReserveRequest(first, "u1", 1, "k1"),
                ReserveRequest(uuid.uuid4(), "u1", 1, "k1"),   # same key: the first answer
                ReserveRequest(uuid.uuid4(), "u1", 2, None),   # over u1's limit of 2
                ReserveRequest(uuid.uuid4(), "u2", 2, None),   # takes the last two units
                ReserveRequest(uuid.uuid4(), "u3", 1, None)]   # sold out
    results = await store.reserve_many(pid, requests)
    assert [r.outcome for r in results] == [
        ReserveOutcome.RESERVED, ReserveOutcome.DUPLICATE, ReserveOutcome.LIMIT_EXCEEDED,
        ReserveOutcome.RESERVED, ReserveOutcome.SOLD_OUT]
    assert (results[0].remaining, results[0].deal_id, results[0].epoch) == (2, deal_id, 3)
    assert results[1].first_order_id == first
    assert (results[2].held, results[2].limit) == (1, 2)
    assert results[3].remaining == 0 and results[4].remaining == 0
    assert (await store.snapshot(pid)).reserved_units == 3


async def test_reserve_many_on_a_closed_deal_refuses_every_buyer(store: StockStore) -> None:
    pid, deal_id = await _opened(store, 3)
    await store.close(pid, deal_id)
    results = await store.reserve_many(
        pid, [ReserveRequest(uuid.uuid4(), f"u{i}", 1) for i in range(3)])
    assert {r.outcome for r in results} == {ReserveOutcome.NOT_ACTIVE}


async def test_reserve_groups_gives_each_deal_its_own_outcomes(store: StockStore) -> None:
    """Several deals in one call (on a cluster, most likely on different nodes)."""
    deals = [await _opened(store, 2) for _ in range(6)]
    closed_pid, closed_deal = deals[-1]
    await store.close(closed_pid, closed_deal)
    groups = [(pid, [ReserveRequest(uuid.uuid4(), f"u{i}", 1) for i in range(3)])
              for pid, _ in deals]
    outcomes = await store.reserve_groups(groups)
    for (pid, _), outcome in zip(deals[:-1], outcomes[:-1], strict=True):
        assert not isinstance(outcome, BaseException)
        assert [r.outcome for r in outcome] == [
            ReserveOutcome.RESERVED, ReserveOutcome.RESERVED, ReserveOutcome.SOLD_OUT]
        assert (await store.peek(pid)).stock == 0
    last = outcomes[-1]
    assert not isinstance(last, BaseException)
    assert {r.outcome for r in last} == {ReserveOutcome.NOT_ACTIVE}


async def test_release_many_gives_each_order_back_exactly_once(store: StockStore) -> None:
    pid, _ = await _opened(store, 5, limit=5)
    other, _ = await _opened(store, 2, limit=2)
    a, b, c, never = uuid.uuid4(), uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    await store.reserve(pid, a, "u1", 2, "k1")
    await store.reserve(pid, b, "u2", 1, None)
    await store.reserve(other, c, "u1", 1, None)
    outcomes = await store.release_many([(pid, a), (other, c), (pid, never), (pid, a),
                                         (pid, b)])
    assert outcomes == [ReleaseOutcome.RELEASED, ReleaseOutcome.RELEASED,
                        ReleaseOutcome.NO_RESERVATION, ReleaseOutcome.NO_RESERVATION,
                        ReleaseOutcome.RELEASED]
    assert ((await store.snapshot(pid)).stock, (await store.snapshot(other)).stock) == (5, 2)
    assert await store.release_many([(pid, a), (pid, b)]) == [
        ReleaseOutcome.NO_RESERVATION] * 2
    assert await store.release_many([]) == []
    # Like `release`: the idempotency record goes too, and the per-user count.
    retry = await store.reserve(pid, uuid.uuid4(), "u1", 5, "k1")
    assert retry.outcome is ReserveOutcome.RESERVED


async def test_release_many_under_concurrency_releases_each_order_once(
        store: StockStore) -> None:
    pid, _ = await _opened(store, 10, limit=10)
    ids = [uuid.uuid4() for _ in range(10)]
    for order_id in ids:
        await store.reserve(pid, order_id, "u1", 1, None)
    runs = await asyncio.gather(*(store.release_many([(pid, i) for i in ids])
                                  for _ in range(8)))
    assert [sum(run[k] is ReleaseOutcome.RELEASED for run in runs) for k in range(10)] == \
        [1] * 10
    assert (await store.snapshot(pid)).stock == 10


async def test_release_many_defers_on_a_closed_or_missing_deal(store: StockStore) -> None:
    pid, deal_id = await _opened(store, 3)
    order_id = uuid.uuid4()
    await store.reserve(pid, order_id, "u1", 1, None)
    await store.close(pid, deal_id)
    assert await store.release_many([(pid, order_id), (_pid(), uuid.uuid4())]) == [
        ReleaseOutcome.NOT_OPEN, ReleaseOutcome.NOT_OPEN]
    assert (await store.snapshot(pid)).reserved_units == 1  # the flush counts it


async def test_release_many_handles_more_orders_than_one_script_call_takes(
        store: StockStore) -> None:
    pid, _ = await _opened(store, 1200, limit=1)
    ids = [uuid.uuid4() for _ in range(1200)]
    for start in range(0, 1200, 100):
        await asyncio.gather(*(store.reserve(pid, ids[i], f"u{i}", 1, None)
                               for i in range(start, start + 100)))
    outcomes = await store.release_many([(pid, i) for i in ids])
    assert outcomes == [ReleaseOutcome.RELEASED] * 1200
    snap = await store.snapshot(pid)
    assert (snap.stock, snap.reservations) == (1200, [])


async def test_forget_many_keeps_the_units_sold_and_the_keys_answered(
        store: StockStore) -> None:
    pid, _ = await _opened(store, 5, limit=5)
    other, _ = await _opened(store, 5, limit=5)
    a, b = uuid.uuid4(), uuid.uuid4()
    await store.reserve(pid, a, "u1", 2, "k1")
    await store.reserve(other, b, "u1", 1, None)
    assert await store.forget_many([(pid, a), (other, b), (pid, a), (pid, uuid.uuid4())]) \
        == [True, True, False, False]
    snap = await store.snapshot(pid)
    assert (snap.stock, snap.reservations) == (3, [])
    assert (await store.due(other, 0, 10)).reservations == []
    again = await store.reserve(pid, uuid.uuid4(), "u1", 1, "k1")
    assert again.outcome is ReserveOutcome.DUPLICATE and again.first_order_id == a
    assert await store.release_many([(pid, a)]) == [ReleaseOutcome.NO_RESERVATION]
    assert await store.forget_many([]) == []


async def test_key_used_tells_whether_a_key_holds_a_reservations_answer(
        store: StockStore) -> None:
    pid, _ = await _opened(store, 5, limit=5)
    order_id = uuid.uuid4()
    await store.reserve(pid, order_id, "u1", 1, "k1")
    assert await store.key_used(pid, "u1", "k1")
    assert not await store.key_used(pid, "u2", "k1") and not await store.key_used(pid, "u1", "k2")
    await store.release(pid, order_id)
    assert not await store.key_used(pid, "u1", "k1")
    assert not await store.key_used(_pid(), "u1", "k1")
