"""Every branch of place_order, on the in-memory stock store and orders port: what each
answers, and where the reserved units end up."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from uuid import UUID

import pytest
from sqlalchemy.ext.asyncio import create_async_engine

from hotdeal_core.batching import OutcomeUnknown
from hotdeal_core.domain import DealStatus, OrderStatus, StockBackend
from hotdeal_core.errors import Conflict, DependencyUnavailable, NotFound
from hotdeal_core.settings import Settings
from hotdeal_core.stock.fake import FakeStockStore
from hotdeal_core.stock.sold_out import SoldOutMemo
from hotdeal_core.usecases.context import Context
from hotdeal_core.usecases.orders import PlaceOrder, place_order
from hotdeal_core.usecases.views import OrderView
from schemas.events import OrderPlaced
from tests.fakes.orders import FakeOrders
from tests.random_refs import random_user
from tests.waiting import eventually

PRICE = 100


@dataclass
class World:
    ctx: Context
    stock: FakeStockStore
    db: FakeOrders

    async def held(self, pid: int) -> int:
        return (await self.stock.snapshot(pid)).reserved_units

    async def left(self, pid: int) -> int | None:
        return (await self.stock.peek(pid)).stock


def _world(settings: Settings, *, redis: bool = True, clock_ms: list[int] | None = None,
           ) -> World:
    stock = FakeStockStore() if clock_ms is None else FakeStockStore(lambda: clock_ms[0])
    db = FakeOrders()
    # Never connected: every Postgres call goes through the fake port.
    engine = create_async_engine("postgresql+asyncpg://unused@127.0.0.1:1/unused")
    ctx = Context(engine=engine, stock=stock, orders_db=db, sold_out=SoldOutMemo(60),
                  settings=settings.model_copy(update={"hotdeal_stock_redis": redis}))
    return World(ctx, stock, db)


async def _hot_deal(w: World, stock: int = 5, limit: int = 5, window_ms: int = 0) -> int:
    """A product whose ACTIVE deal keeps its stock in Redis (opened in the stock store)."""
    pid = await w.db.create_product("hot", PRICE, 0)
    deal_id = w.db.add_deal(pid, stock, limit)
    await w.stock.open(pid, deal_id, stock, limit, epoch=1, unit_price=PRICE,
                       opening_window_ms=window_ms)
    return pid


def _placed_events(w: World, order: OrderView) -> list[OrderPlaced]:
    return [e for e in w.db.events_of(str(order.id)) if isinstance(e, OrderPlaced)]


# The Redis path

async def test_a_reserved_order_is_written_pending_with_its_placed_event(
        settings: Settings) -> None:
    w = _world(settings)
    pid = await _hot_deal(w)
    order = await place_order(w.ctx, PlaceOrder(pid, random_user(), 2))
    assert order.status == OrderStatus.PENDING and order.total == 2 * PRICE
    assert w.db.orders[order.id] == order
    assert [e.quantity for e in _placed_events(w, order)] == [2]
    assert await w.held(pid) == 2 and await w.left(pid) == 3


async def test_a_buyer_past_the_last_unit_is_told_sold_out_and_the_memo_refuses_the_next(
        settings: Settings) -> None:
    w = _world(settings)
    pid = await _hot_deal(w, stock=1)
    first = await place_order(w.ctx, PlaceOrder(pid, random_user(), 1))
    with pytest.raises(Conflict) as late:
        await place_order(w.ctx, PlaceOrder(pid, random_user(), 1))
    assert late.value.code == "sold_out"
    await w.stock.release(pid, first.id)  # a unit is back, but the memo still says sold out
    with pytest.raises(Conflict, match="sold out"):
        await place_order(w.ctx, PlaceOrder(pid, random_user(), 1))
    assert await w.left(pid) == 1 and len(w.db.orders) == 1


async def test_a_buyer_over_the_per_user_limit_is_told_what_they_hold(
        settings: Settings) -> None:
    w = _world(settings)
    pid = await _hot_deal(w, limit=2)
    buyer = random_user()
    await place_order(w.ctx, PlaceOrder(pid, buyer, 2))
    with pytest.raises(Conflict) as over:
        await place_order(w.ctx, PlaceOrder(pid, buyer, 1))
    assert over.value.code == "limit_exceeded" and "limit is 2; 2 already held" in str(over.value)
    assert await w.held(pid) == 2


async def test_a_retry_with_the_same_key_gets_the_first_order_back(settings: Settings) -> None:
    w = _world(settings)
    pid = await _hot_deal(w)
    buyer = random_user()
    first = await place_order(w.ctx, PlaceOrder(pid, buyer, 1, "key-1"))
    again = await place_order(w.ctx, PlaceOrder(pid, buyer, 1, "key-1"))
    assert again == first and len(w.db.orders) == 1 and await w.held(pid) == 1


async def test_a_retry_while_the_first_request_is_still_writing_is_asked_to_retry(
        settings: Settings) -> None:
    w = _world(settings)
    pid = await _hot_deal(w)
    buyer = random_user()
    await w.stock.reserve(pid, UUID(int=1), buyer, 1, "key-1")  # reserved, not yet written
    with pytest.raises(Conflict) as busy:
        await place_order(w.ctx, PlaceOrder(pid, buyer, 1, "key-1"))
    assert busy.value.code == "idempotency_in_progress" and await w.held(pid) == 1


async def test_a_redis_deal_without_state_in_redis_is_not_active(settings: Settings) -> None:
    w = _world(settings)
    pid = await w.db.create_product("hot", PRICE, 10)
    w.db.add_deal(pid, 5, 5)  # ACTIVE in Postgres, nothing opened in the stock store
    with pytest.raises(Conflict) as refused:
        await place_order(w.ctx, PlaceOrder(pid, random_user(), 1))
    assert refused.value.code == "deal_not_active" and not w.db.orders


async def test_an_ordinary_product_is_sold_from_postgres_even_with_redis_on(
        settings: Settings) -> None:
    w = _world(settings)
    pid = await w.db.create_product("plain", PRICE, 3)
    order = await place_order(w.ctx, PlaceOrder(pid, random_user(), 2))
    assert order.hot_deal_id is None and w.db.products[pid].stock == 1
    assert len(_placed_events(w, order)) == 1


async def test_an_unknown_product_is_not_found(settings: Settings) -> None:
    w = _world(settings)
    with pytest.raises(NotFound) as missing:
        await place_order(w.ctx, PlaceOrder(424242, random_user(), 1))
    assert missing.value.code == "product_not_found"


# The group commit's answers

@pytest.mark.parametrize("landed", [True, False], ids=["landed", "lost"])
async def test_an_order_whose_commit_outcome_is_unknown_keeps_its_reservation(
        settings: Settings, landed: bool) -> None:
    w = _world(settings)
    pid = await _hot_deal(w)
    w.db.commit_unknown, w.db.landed = True, landed
    with pytest.raises(OutcomeUnknown) as unknown:
        await place_order(w.ctx, PlaceOrder(pid, random_user(), 2))
    assert unknown.value.http_status == 503 and unknown.value.retriable
    assert await w.held(pid) == 2 and len(w.db.orders) == (1 if landed else 0)


@pytest.mark.parametrize("change", ["ended", "rebuilt"])
async def test_an_order_fenced_by_its_deal_is_released_and_answered_not_active(
        settings: Settings, change: str) -> None:
    w = _world(settings)
    pid = await _hot_deal(w)
    deal = next(iter(w.db.deals.values()))
    if change == "ended":
        deal.status = DealStatus.ENDED  # ended in Postgres, Redis not yet closed
    else:
        deal.epoch = 2  # rebuilt: the reservation's epoch 1 is stale
    with pytest.raises(Conflict) as fenced:
        await place_order(w.ctx, PlaceOrder(pid, random_user(), 2))
    assert fenced.value.code == "deal_not_active"
    assert not w.db.orders and await w.held(pid) == 0 and await w.left(pid) == 5


async def test_an_order_voided_by_the_orphan_sweep_meanwhile_is_released_and_asked_to_retry(
        settings: Settings) -> None:
    w = _world(settings)
    pid = await _hot_deal(w)

    def sweeper_voids_it() -> None:  # runs between the reservation and the write
        (order_id, r), = w.stock.deals[pid].res.items()
        w.db.orders[order_id] = OrderView(order_id, pid, 1, r.user_id, r.quantity, PRICE,
                                          OrderStatus.CANCELLED, "orphaned",
                                          w.db.clock(), w.db.clock(), w.db.clock())

    w.ctx.after_reserve = sweeper_voids_it
    with pytest.raises(DependencyUnavailable) as retry:
        await place_order(w.ctx, PlaceOrder(pid, random_user(), 2))
    assert not isinstance(retry.value, OutcomeUnknown) and retry.value.http_status == 503
    assert await w.held(pid) == 0 and await w.left(pid) == 5


async def test_a_keyed_order_whose_key_a_concurrent_request_won_gets_that_order(
        settings: Settings) -> None:
    w = _world(settings)
    pid = await _hot_deal(w)
    buyer = random_user()
    winner = await place_order(w.ctx, PlaceOrder(pid, buyer, 1, "key-1"))
    await w.stock.release(pid, winner.id)  # Redis forgot the key (its state was rebuilt)
    again = await place_order(w.ctx, PlaceOrder(pid, buyer, 1, "key-1"))
    assert again == winner and len(w.db.orders) == 1
    assert await w.held(pid) == 0 and await w.left(pid) == 5  # the loser's units went back


# The opening window (the stock store's draw)

async def test_a_buyer_in_the_opening_window_gets_the_draws_answer(settings: Settings) -> None:
    now = [1_000_000]
    w = _world(settings, clock_ms=now)
    pid = await _hot_deal(w, window_ms=20)
    buyer = random_user()
    entry = asyncio.ensure_future(place_order(w.ctx, PlaceOrder(pid, buyer, 1)))

    async def entered() -> bool:
        return buyer in w.stock.deals[pid].entries
    await eventually(entered, timeout=5, what="the buyer's entry")
    now[0] += 20  # the window ends by the store's clock
    order = await asyncio.wait_for(entry, 5)
    assert order.status == OrderStatus.PENDING and w.db.orders[order.id] == order
    assert await w.held(pid) == 1


async def test_a_second_request_of_an_entered_buyer_is_told_already_entered(
        settings: Settings) -> None:
    now = [1_000_000]
    w = _world(settings, clock_ms=now)
    pid = await _hot_deal(w, window_ms=2_000)
    buyer = random_user()
    entry = asyncio.ensure_future(place_order(w.ctx, PlaceOrder(pid, buyer, 1, "a")))
    try:
        async def entered() -> bool:
            return buyer in w.stock.deals[pid].entries
        await eventually(entered, timeout=5, what="the buyer's entry")
        with pytest.raises(Conflict) as again:
            await place_order(w.ctx, PlaceOrder(pid, buyer, 1, "b"))
        assert again.value.code == "already_entered" and "in 2.0 s" in str(again.value)
    finally:
        entry.cancel()


# The Postgres path (HOTDEAL_STOCK_REDIS=false, or a deal kept in the db)

async def _db_deal(w: World, stock: int = 5, limit: int = 5) -> int:
    pid = await w.db.create_product("hot", PRICE, 0)
    w.db.add_deal(pid, stock, limit, backend=StockBackend.DB)
    return pid


async def test_the_postgres_path_takes_the_deals_stock_and_writes_the_order(
        settings: Settings) -> None:
    w = _world(settings, redis=False)
    pid = await _db_deal(w)
    order = await place_order(w.ctx, PlaceOrder(pid, random_user(), 2))
    assert order.hot_deal_id is not None and order.status == OrderStatus.PENDING
    assert next(iter(w.db.deals.values())).remaining_stock == 3
    assert len(_placed_events(w, order)) == 1


@pytest.mark.parametrize("deal", [True, False], ids=["db-deal", "ordinary"])
async def test_the_postgres_path_answers_sold_out_and_takes_nothing(
        settings: Settings, deal: bool) -> None:
    w = _world(settings, redis=False)
    pid = await _db_deal(w, stock=1) if deal else await w.db.create_product("p", PRICE, 1)
    with pytest.raises(Conflict) as sold:
        await place_order(w.ctx, PlaceOrder(pid, random_user(), 2))
    assert sold.value.code == "sold_out" and not w.db.orders and not w.db.outbox


async def test_the_postgres_path_refuses_a_buyer_over_the_limit(settings: Settings) -> None:
    w = _world(settings, redis=False)
    pid = await _db_deal(w, limit=2)
    buyer = random_user()
    await place_order(w.ctx, PlaceOrder(pid, buyer, 2))
    with pytest.raises(Conflict) as over:
        await place_order(w.ctx, PlaceOrder(pid, buyer, 1))
    assert over.value.code == "limit_exceeded"
    assert next(iter(w.db.deals.values())).remaining_stock == 3


async def test_the_postgres_path_refuses_a_deal_whose_stock_is_in_redis(
        settings: Settings) -> None:
    w = _world(settings, redis=False)
    pid = await _hot_deal(w)
    with pytest.raises(Conflict) as refused:
        await place_order(w.ctx, PlaceOrder(pid, random_user(), 1))
    assert refused.value.code == "deal_not_active"


async def test_the_postgres_path_replays_a_keyed_retry(settings: Settings) -> None:
    w = _world(settings, redis=False)
    pid = await _db_deal(w)
    buyer = random_user()
    first = await place_order(w.ctx, PlaceOrder(pid, buyer, 1, "key-1"))
    assert await place_order(w.ctx, PlaceOrder(pid, buyer, 1, "key-1")) == first
    assert next(iter(w.db.deals.values())).remaining_stock == 4


async def test_the_postgres_path_serves_the_winner_of_a_concurrent_same_key_insert(
        settings: Settings) -> None:
    w = _world(settings, redis=False)
    pid = await _db_deal(w)
    buyer = random_user()
    now = w.db.clock()
    winner = OrderView(UUID(int=7), pid, 1, buyer, 1, PRICE, OrderStatus.PENDING, None,
                       now, now, now)
    w.db.key_race = winner
    assert await place_order(w.ctx, PlaceOrder(pid, buyer, 1, "key-1")) == winner
    assert next(iter(w.db.deals.values())).remaining_stock == 5
