"""The Lua scripts against real Redis: one atomic step each, explicit outcomes."""

from __future__ import annotations

import asyncio
import random
import uuid

from redis.asyncio import Redis

from hotdeal_core.stock.port import ReleaseOutcome, ReserveOutcome
from hotdeal_core.stock.redis_store import RedisStockStore, deal_keys


def _pid() -> int:
    return random.randint(10**9, 2 * 10**9)


async def _opened(store: RedisStockStore, stock: int, limit: int = 1) -> tuple[int, int]:
    pid, deal_id = _pid(), random.randint(1, 10**9)
    assert await store.open(pid, deal_id, stock, limit, epoch=3, unit_price=500)
    return pid, deal_id


async def test_reserve_with_stock_zero_is_sold_out(redis: Redis) -> None:
    store = RedisStockStore(redis)
    pid, _ = await _opened(store, 0)
    result = await store.reserve(pid, uuid.uuid4(), "u1", 1, None, 1)
    assert result.outcome is ReserveOutcome.SOLD_OUT and result.remaining == 0


async def test_reserve_with_stock_one_sells_exactly_once(redis: Redis) -> None:
    store = RedisStockStore(redis)
    pid, deal_id = await _opened(store, 1)
    first = await store.reserve(pid, uuid.uuid4(), "u1", 1, None, 1)
    second = await store.reserve(pid, uuid.uuid4(), "u2", 1, None, 1)
    assert first.outcome is ReserveOutcome.RESERVED
    assert (first.epoch, first.remaining, first.deal_id, first.unit_price) == (3, 0, deal_id, 500)
    assert second.outcome is ReserveOutcome.SOLD_OUT


async def test_reserve_with_stock_n_under_concurrency_never_oversells(redis: Redis) -> None:
    store = RedisStockStore(redis)
    pid, _ = await _opened(store, 50)
    results = await asyncio.gather(*(store.reserve(pid, uuid.uuid4(), f"u{i}", 1, None, 1)
                                     for i in range(500)))
    outcomes = [r.outcome for r in results]
    assert outcomes.count(ReserveOutcome.RESERVED) == 50
    assert outcomes.count(ReserveOutcome.SOLD_OUT) == 450
    snap = await store.snapshot(pid)
    assert snap.stock == 0 and len(snap.reservations) == 50


async def test_repeat_buyer_is_refused_over_the_per_user_limit(redis: Redis) -> None:
    store = RedisStockStore(redis)
    pid, _ = await _opened(store, 10, limit=2)
    assert (await store.reserve(pid, uuid.uuid4(), "u1", 2, None, 1)).outcome \
        is ReserveOutcome.RESERVED
    refused = await store.reserve(pid, uuid.uuid4(), "u1", 1, None, 1)
    assert refused.outcome is ReserveOutcome.LIMIT_EXCEEDED
    assert (refused.held, refused.limit) == (2, 2)
    assert (await store.snapshot(pid)).stock == 8


async def test_repeated_idempotency_key_reserves_nothing_more(redis: Redis) -> None:
    store = RedisStockStore(redis)
    pid, _ = await _opened(store, 10, limit=5)
    first_id = uuid.uuid4()
    assert (await store.reserve(pid, first_id, "u1", 1, "k1", 1)).outcome \
        is ReserveOutcome.RESERVED
    again = await store.reserve(pid, uuid.uuid4(), "u1", 1, "k1", 1)
    assert again.outcome is ReserveOutcome.DUPLICATE and again.first_order_id == first_id
    other_user = await store.reserve(pid, uuid.uuid4(), "u2", 1, "k1", 1)
    assert other_user.outcome is ReserveOutcome.RESERVED  # keys are per user
    assert (await store.snapshot(pid)).stock == 8


async def test_missing_deal_key_means_not_active_not_an_error(redis: Redis) -> None:
    store = RedisStockStore(redis)
    result = await store.reserve(_pid(), uuid.uuid4(), "u1", 1, None, 1)
    assert result.outcome is ReserveOutcome.NOT_ACTIVE
    assert await store.release(_pid(), uuid.uuid4()) is ReleaseOutcome.NOT_OPEN


async def test_release_gives_units_back_exactly_once(redis: Redis) -> None:
    store = RedisStockStore(redis)
    pid, _ = await _opened(store, 1)
    order_id = uuid.uuid4()
    await store.reserve(pid, order_id, "u1", 1, None, 1)
    outcomes = await asyncio.gather(*(store.release(pid, order_id) for _ in range(20)))
    assert outcomes.count(ReleaseOutcome.RELEASED) == 1
    assert outcomes.count(ReleaseOutcome.NO_RESERVATION) == 19
    assert (await store.snapshot(pid)).stock == 1
    assert await redis.hget(deal_keys(pid)[2], "u1") is None  # per-user count given back
    assert (await store.reserve(pid, uuid.uuid4(), "u1", 1, None, 1)).outcome \
        is ReserveOutcome.RESERVED


async def test_closed_deal_refuses_reservations_and_releases(redis: Redis) -> None:
    store = RedisStockStore(redis)
    pid, deal_id = await _opened(store, 5)
    order_id = uuid.uuid4()
    await store.reserve(pid, order_id, "u1", 1, None, 1)
    assert await store.close(pid, deal_id)
    assert (await store.reserve(pid, uuid.uuid4(), "u2", 1, None, 1)).outcome \
        is ReserveOutcome.NOT_ACTIVE
    assert await store.release(pid, order_id) is ReleaseOutcome.NOT_OPEN
    snap = await store.snapshot(pid)
    assert (snap.status, snap.stock, snap.reserved_units) == ("closed", 4, 1)


async def test_open_never_overwrites_live_state_and_drop_checks_the_owner(redis: Redis) -> None:
    store = RedisStockStore(redis)
    pid, deal_id = await _opened(store, 5)
    assert not await store.open(pid, deal_id + 1, 99, 1, epoch=1, unit_price=1)
    assert not await store.drop(pid, deal_id + 1)
    assert (await store.snapshot(pid)).stock == 5
    assert await store.drop(pid, deal_id)
    assert (await store.snapshot(pid)).status is None
