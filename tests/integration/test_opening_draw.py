"""The opening window's draw, at the stock store's contract (Redis/Lua and the fake): every
buyer of the window enters once, nothing is reserved before the draw, and the draw reserves
in random order, never in arrival order."""

from __future__ import annotations

import asyncio
import random
import statistics
import uuid

import pytest
from redis.asyncio import Redis

from hotdeal_core.settings import Settings
from hotdeal_core.stock.client import replica_acks
from hotdeal_core.stock.fake import FakeStockStore
from hotdeal_core.stock.port import Drawn, ReserveOutcome, StockStore
from hotdeal_core.stock.redis_store import RedisStockStore
from tests.waiting import eventually

WINDOW_MS = 300
# Long enough for 200 entries on a busy machine (one entering late would be served at once).
LONG_WINDOW_MS = 3000


@pytest.fixture(params=["redis", "fake"])
def store(request: pytest.FixtureRequest, redis: Redis, settings: Settings) -> StockStore:
    if request.param == "fake":
        return FakeStockStore()
    return RedisStockStore(redis, replica_acks(settings))


async def _windowed(store: StockStore, stock: int, limit: int = 1,
                    window_ms: int = WINDOW_MS) -> int:
    pid = random.randint(10**9, 2 * 10**9)
    assert await store.open(pid, random.randint(1, 10**9), stock, limit, epoch=1,
                            unit_price=100, opening_window_ms=window_ms)
    return pid


async def _after_draw(store: StockStore, pid: int, buyers: list[str]) -> Drawn:
    async def probe() -> Drawn | None:
        drawn = await store.drawn(pid, buyers)
        return drawn if drawn.wait_ms <= 0 else None
    return await eventually(probe, timeout=10)


async def test_an_order_in_the_window_enters_the_draw_and_reserves_nothing(
        store: StockStore) -> None:
    pid = await _windowed(store, 5)
    order_id = uuid.uuid4()
    entered = await store.reserve(pid, order_id, "u1", 1, None)
    assert entered.outcome is ReserveOutcome.ENTERED
    assert entered.first_order_id == order_id and 0 < entered.wait_ms <= WINDOW_MS
    snap = await store.snapshot(pid)
    assert snap.stock == 5 and snap.reservations == []
    early = await store.drawn(pid, ["u1"])
    assert early.wait_ms > 0 and early.answers == {}


async def test_one_entry_per_buyer_a_retry_with_the_entrys_key_waits_for_it(
        store: StockStore) -> None:
    pid = await _windowed(store, 5)
    first = uuid.uuid4()
    assert (await store.reserve(pid, first, "u1", 1, "k1")).outcome is ReserveOutcome.ENTERED
    again = await store.reserve(pid, uuid.uuid4(), "u1", 1, None)
    other_key = await store.reserve(pid, uuid.uuid4(), "u1", 1, "k2")
    retry = await store.reserve(pid, uuid.uuid4(), "u1", 1, "k1")
    assert again.outcome is other_key.outcome is ReserveOutcome.ALREADY_ENTERED
    assert retry.outcome is ReserveOutcome.ENTERED and retry.first_order_id == first
    drawn = await _after_draw(store, pid, ["u1", "nobody"])
    answer = drawn.answers["u1"]
    assert answer is not None and answer[0] == first
    assert answer[1].outcome is ReserveOutcome.RESERVED
    assert drawn.answers["nobody"] is None
    snap = await store.snapshot(pid)
    assert snap.stock == 4 and [r.order_id for r in snap.reservations] == [first]


async def test_the_draw_never_oversells_and_answers_every_entrant(store: StockStore) -> None:
    pid = await _windowed(store, 30, window_ms=LONG_WINDOW_MS)
    buyers = [f"b{i}" for i in range(200)]
    entered = await asyncio.gather(*(store.reserve(pid, uuid.uuid4(), b, 1, None)
                                     for b in buyers))
    assert {e.outcome for e in entered} == {ReserveOutcome.ENTERED}
    drawn = await _after_draw(store, pid, buyers)
    outcomes = [a[1].outcome for a in drawn.answers.values() if a is not None]
    assert len(outcomes) == 200
    assert outcomes.count(ReserveOutcome.RESERVED) == 30
    assert outcomes.count(ReserveOutcome.SOLD_OUT) == 170
    snap = await store.snapshot(pid)
    assert snap.stock == 0 and len(snap.reservations) == 30


async def test_the_draw_ignores_the_order_of_arrival(store: StockStore) -> None:
    """200 buyers enter one after another, 50 win: in arrival order the winners' mean
    position would be 24.5; drawn at random it is 99.5 (standard deviation about 7)."""
    pid = await _windowed(store, 50, window_ms=LONG_WINDOW_MS)
    buyers = [f"b{i}" for i in range(200)]
    for buyer in buyers:
        await store.reserve(pid, uuid.uuid4(), buyer, 1, None)
    drawn = await _after_draw(store, pid, buyers)
    winners = [i for i, b in enumerate(buyers)
               if (a := drawn.answers[b]) is not None and a[1].outcome is ReserveOutcome.RESERVED]
    assert len(winners) == 50
    assert 60 < statistics.mean(winners) < 140


async def test_an_order_after_the_window_is_served_after_every_entrant(
        store: StockStore) -> None:
    pid = await _windowed(store, 3)
    for i in range(3):
        await store.reserve(pid, uuid.uuid4(), f"e{i}", 1, None)
    await eventually(lambda: _due(store, pid), timeout=10)
    late = await store.reserve(pid, uuid.uuid4(), "late", 1, None)  # runs the draw first
    assert late.outcome is ReserveOutcome.SOLD_OUT
    drawn = await store.drawn(pid, ["e0", "e1", "e2"])
    assert all(a is not None and a[1].outcome is ReserveOutcome.RESERVED
               for a in drawn.answers.values())


async def _due(store: StockStore, pid: int) -> bool | None:
    """True once the window has ended by the store's clock (asking runs the draw)."""
    return True if (await store.drawn(pid, [])).wait_ms <= 0 else None


async def test_a_deal_closed_in_its_window_draws_nothing(store: StockStore) -> None:
    pid = await _windowed(store, 3)
    await store.reserve(pid, uuid.uuid4(), "u1", 1, None)
    snap = await store.peek(pid)
    assert await store.close(pid, snap.deal_id)
    drawn = await store.drawn(pid, ["u1"])
    assert drawn.wait_ms <= 0 and drawn.answers == {"u1": None}
    assert (await store.snapshot(pid)).stock == 3


async def test_a_deal_without_a_window_reserves_at_once(store: StockStore) -> None:
    pid = random.randint(10**9, 2 * 10**9)
    assert await store.open(pid, 7, 1, 1, epoch=1, unit_price=1)
    assert (await store.reserve(pid, uuid.uuid4(), "u1", 1, None)).outcome \
        is ReserveOutcome.RESERVED
    assert (await store.drawn(pid, ["u1"])).answers == {"u1": None}

