"""Orders in a deal's opening window, through the use case against real Postgres and Redis:
every buyer waits for the draw, exactly the deal's units are sold, each buyer's requests of
the window are answered by one entry."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import replace

import pytest
from redis.asyncio import Redis
from sqlalchemy import func, select

from hotdeal_core.db.tables import orders
from hotdeal_core.errors import Conflict, Unprocessable
from hotdeal_core.settings import Settings
from hotdeal_core.stock.draws import DrawWaiters
from hotdeal_core.stock.port import Drawn, StockStore
from hotdeal_core.stock.redis_store import ENTRIES, deal_keys
from hotdeal_core.usecases.context import Context
from hotdeal_core.usecases.deals import StartDeal, end_deal, opening_window, start_deal
from hotdeal_core.usecases.orders import PlaceOrder, place_order
from hotdeal_core.usecases.views import OrderView
from tests.conftest import ProductFactory
from tests.random_refs import random_user
from tests.waiting import eventually

WINDOW = 0.5


class CountingStore:
    """The real store, its `drawn` calls counted."""

    def __init__(self, store: StockStore) -> None:
        self._store = store
        self.drawn_calls: list[int] = []

    def __getattr__(self, name: str) -> object:
        return getattr(self._store, name)

    async def drawn(self, product_id: int, buyers: Sequence[str]) -> Drawn:
        self.drawn_calls.append(len(buyers))
        return await self._store.drawn(product_id, buyers)


async def _windowed_deal(ctx: Context, new_product: ProductFactory, stock: int) -> int:
    pid = await new_product(stock=stock)
    await start_deal(ctx, StartDeal(pid, stock, 1, opening_window_seconds=WINDOW))
    return pid


async def _answer(ctx: Context, cmd: PlaceOrder) -> OrderView | Conflict:
    try:
        return await place_order(ctx, cmd)
    except Conflict as exc:
        return exc


async def test_the_window_sells_exactly_its_units_with_one_draw_call_per_process(
        ctx: Context, new_product: ProductFactory) -> None:
    counting = CountingStore(ctx.stock)
    wctx = replace(ctx, stock=counting)  # type: ignore[arg-type]
    wctx.draws = DrawWaiters(counting)  # type: ignore[arg-type]
    pid = await _windowed_deal(wctx, new_product, 10)
    answers = await asyncio.gather(*(_answer(wctx, PlaceOrder(pid, random_user(), 1))
                                     for _ in range(40)))
    placed = [a for a in answers if isinstance(a, OrderView)]
    refused = [a.code for a in answers if isinstance(a, Conflict)]
    assert len(placed) == 10 and refused == ["sold_out"] * 30
    assert counting.drawn_calls == [40]  # 40 waiters, one wake-up, one call
    async with ctx.engine.connect() as conn:
        count = (await conn.execute(select(func.count()).select_from(orders).where(
            orders.c.product_id == pid))).scalar_one()
    assert count == 10


async def test_a_buyers_second_request_in_the_window_is_refused_and_a_keyed_retry_joins_it(
        ctx: Context, new_product: ProductFactory, redis: Redis) -> None:
    pid = await _windowed_deal(ctx, new_product, 5)
    buyer = random_user()
    keyed = [asyncio.create_task(_answer(ctx, PlaceOrder(pid, buyer, 1, "key-1")))
             for _ in range(2)]

    async def entered() -> bool:
        return bool(await redis.hexists(deal_keys(pid)[ENTRIES], buyer))
    await eventually(entered, timeout=5, what="the buyer's entry")
    with pytest.raises(Conflict) as second:
        await place_order(ctx, PlaceOrder(pid, buyer, 1))
    assert second.value.code == "already_entered"
    answers = await asyncio.gather(*keyed)
    orders_placed = {a.id for a in answers if isinstance(a, OrderView)}
    assert len(orders_placed) == 1  # one order; the joiner got it or "still being written"
    assert all(isinstance(a, OrderView) or a.code == "idempotency_in_progress"
               for a in answers)


async def test_a_deal_ended_in_its_window_answers_its_entrants_not_active(
        ctx: Context, new_product: ProductFactory) -> None:
    pid = await _windowed_deal(ctx, new_product, 5)
    waiting = asyncio.create_task(_answer(ctx, PlaceOrder(pid, random_user(), 1)))
    await end_deal(ctx, pid)
    answer = await waiting
    assert isinstance(answer, Conflict) and answer.code == "deal_not_active"


async def test_a_postgres_stock_deal_refuses_a_window(db_ctx: Context,
                                                     new_product: ProductFactory) -> None:
    pid = await new_product(stock=5)
    with pytest.raises(Unprocessable):
        await start_deal(db_ctx, StartDeal(pid, 5, 1, opening_window_seconds=2))


def test_an_edge_without_a_window_takes_the_setting_for_redis_and_none_for_postgres() -> None:
    redis = Settings(deal_opening_window_seconds=2.5)
    db = Settings(deal_opening_window_seconds=2.5, hotdeal_stock_redis=False)
    assert opening_window(redis, None) == 2.5 and opening_window(redis, 0) == 0
    assert opening_window(db, None) == 0 and opening_window(redis, 7) == 7
