"""get_order, the buyer's and the trusted caller's requests, and get_product, on the
in-memory stock store and orders port."""

from __future__ import annotations

from dataclasses import replace
from uuid import uuid4

import pytest
from sqlalchemy.ext.asyncio import create_async_engine

from hotdeal_core.domain import OrderStatus, StockBackend
from hotdeal_core.errors import Conflict, NotFound, Unprocessable
from hotdeal_core.settings import Settings
from hotdeal_core.stock.fake import FakeStockStore
from hotdeal_core.usecases.context import Context
from hotdeal_core.usecases.orders import (
    PlaceOrder,
    get_order,
    place_order,
    request_cancellation,
    request_confirmation,
)
from hotdeal_core.usecases.products import create_product, get_product
from hotdeal_core.usecases.views import OrderView
from tests.fakes.orders import FakeOrders
from tests.random_refs import random_user


def _ctx(settings: Settings) -> tuple[Context, FakeOrders, FakeStockStore]:
    db, stock = FakeOrders(), FakeStockStore()
    engine = create_async_engine("postgresql+asyncpg://unused@127.0.0.1:1/unused")
    return Context(engine=engine, stock=stock, settings=settings, orders_db=db), db, stock


async def _pending(ctx: Context) -> OrderView:
    pid = (await create_product(ctx, "plain", 100, 5)).id
    return await place_order(ctx, PlaceOrder(pid, random_user(), 1))


def _requests(db: FakeOrders, order: OrderView) -> list[str]:
    return [e.type for e in db.events_of(str(order.id)) if e.type.endswith("Requested")]


async def test_a_buyer_reads_their_order_and_nobody_elses(settings: Settings) -> None:
    ctx, _, _ = _ctx(settings)
    order = await _pending(ctx)
    assert await get_order(ctx, order.id, order.user_id) == order
    for buyer, order_id in ((random_user(), order.id), (order.user_id, uuid4())):
        with pytest.raises(NotFound):
            await get_order(ctx, order_id, buyer)


async def test_a_pending_order_gets_one_request_per_call(settings: Settings) -> None:
    ctx, db, _ = _ctx(settings)
    order = await _pending(ctx)
    await request_cancellation(ctx, order.id, order.user_id)
    await request_confirmation(ctx, order.id)
    assert _requests(db, order) == ["OrderCancellationRequested", "OrderConfirmationRequested"]


async def test_a_buyer_cannot_cancel_someone_elses_order(settings: Settings) -> None:
    ctx, db, _ = _ctx(settings)
    order = await _pending(ctx)
    with pytest.raises(NotFound):
        await request_cancellation(ctx, order.id, random_user())
    assert _requests(db, order) == []


@pytest.mark.parametrize(("status", "paid", "asked", "refused"), [
    (OrderStatus.CONFIRMED, False, "cancel", "already confirmed"),
    (OrderStatus.PENDING, True, "cancel", "paid"),
    (OrderStatus.CANCELLED, False, "confirm", "cancelled"),
])
async def test_a_request_the_order_cannot_take_is_refused(
        settings: Settings, status: str, paid: bool, asked: str, refused: str) -> None:
    ctx, db, _ = _ctx(settings)
    order = await _pending(ctx)
    db.orders[order.id] = replace(order, status=status, paid=paid)
    with pytest.raises(Conflict, match=refused) as conflict:
        if asked == "cancel":
            await request_cancellation(ctx, order.id, order.user_id)
        else:
            await request_confirmation(ctx, order.id)
    assert conflict.value.code == "invalid_state" and _requests(db, order) == []


@pytest.mark.parametrize(("status", "asked"), [
    (OrderStatus.CANCELLED, "cancel"), (OrderStatus.CONFIRMED, "confirm")])
async def test_a_request_already_fulfilled_answers_the_order_and_records_nothing(
        settings: Settings, status: str, asked: str) -> None:
    ctx, db, _ = _ctx(settings)
    order = replace(await _pending(ctx), status=status)
    db.orders[order.id] = order
    if asked == "cancel":
        assert await request_cancellation(ctx, order.id, order.user_id) == order
    else:
        assert await request_confirmation(ctx, order.id) == order
    assert _requests(db, order) == []


async def test_a_product_shows_its_deals_live_stock_from_where_it_is_kept(
        settings: Settings) -> None:
    ctx, db, stock = _ctx(settings)
    hot = (await create_product(ctx, "hot", 100, 0)).id
    deal_id = db.add_deal(hot, 10, 2)
    assert (await get_product(ctx, hot)).deal.remaining is None  # type: ignore[union-attr]
    await stock.open(hot, deal_id, 10, 2, epoch=1, unit_price=100)
    await place_order(ctx, PlaceOrder(hot, random_user(), 2))
    assert (await get_product(ctx, hot)).deal.remaining == 8  # type: ignore[union-attr]
    kept = (await create_product(ctx, "db", 100, 0)).id
    db.add_deal(kept, 7, 2, backend=StockBackend.DB)
    assert (await get_product(ctx, kept)).deal.remaining == 7  # type: ignore[union-attr]


async def test_a_product_that_is_not_there_or_not_valid_is_refused(settings: Settings) -> None:
    ctx, _, _ = _ctx(settings)
    with pytest.raises(NotFound):
        await get_product(ctx, 12345)
    with pytest.raises(Unprocessable):
        await create_product(ctx, " ", 1, 1)
