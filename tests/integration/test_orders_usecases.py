"""Placing and settling orders against real Postgres and Redis, in both stock modes."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from sqlalchemy import select

from hotdeal_core.db.tables import hot_deals, orders, outbox, products
from hotdeal_core.domain import CancelReason
from hotdeal_core.errors import Conflict, DependencyUnavailable, NotFound
from hotdeal_core.usecases.context import Context
from hotdeal_core.usecases.deals import StartDeal, start_deal
from hotdeal_core.usecases.orders import PlaceOrder, place_order
from hotdeal_core.usecases.settlement import cancel_order, confirm_order, expire_due_orders
from tests.conftest import ProductFactory
from tests.random_refs import random_user


async def _deal(ctx: Context, new_product: ProductFactory, stock: int, limit: int = 1,
                product_stock: int | None = None) -> int:
    pid = await new_product(stock=product_stock or stock, price=700)
    await start_deal(ctx, StartDeal(pid, stock, limit))
    return pid


@pytest.fixture(params=["redis", "db"])
def mode_ctx(request: pytest.FixtureRequest, ctx: Context, db_ctx: Context) -> Context:
    return ctx if request.param == "redis" else db_ctx


async def test_order_is_pending_with_its_outbox_event(mode_ctx: Context,
                                                      new_product: ProductFactory) -> None:
    pid = await _deal(mode_ctx, new_product, 5)
    order = await place_order(mode_ctx, PlaceOrder(pid, random_user(), 1))
    assert order.status == "PENDING" and order.unit_price == 700 and order.hot_deal_id
    async with mode_ctx.engine.connect() as conn:
        events = (await conn.execute(select(outbox.c.event_type, outbox.c.topic).where(
            outbox.c.key == str(order.id)))).all()
    assert [tuple(e) for e in events] == [("OrderPlaced", mode_ctx.topics.orders)]


async def test_sold_out_limit_and_idempotency_in_both_modes(mode_ctx: Context,
                                                             new_product: ProductFactory) -> None:
    pid = await _deal(mode_ctx, new_product, 3, limit=2)
    buyer = random_user()
    first = await place_order(mode_ctx, PlaceOrder(pid, buyer, 1, "key-1"))
    again = await place_order(mode_ctx, PlaceOrder(pid, buyer, 1, "key-1"))
    assert again.id == first.id
    await place_order(mode_ctx, PlaceOrder(pid, buyer, 1, "key-2"))
    with pytest.raises(Conflict) as limit:
        await place_order(mode_ctx, PlaceOrder(pid, buyer, 1, "key-3"))
    assert limit.value.code == "limit_exceeded"
    await place_order(mode_ctx, PlaceOrder(pid, random_user(), 1))
    with pytest.raises(Conflict) as sold:
        await place_order(mode_ctx, PlaceOrder(pid, random_user(), 1))
    assert sold.value.code == "sold_out"


async def test_unknown_product_is_not_found(ctx: Context) -> None:
    with pytest.raises(NotFound):
        await place_order(ctx, PlaceOrder(10**12, random_user(), 1))


async def test_ordinary_product_takes_the_postgres_path(ctx: Context,
                                                        new_product: ProductFactory) -> None:
    pid = await new_product(stock=1)
    order = await place_order(ctx, PlaceOrder(pid, random_user(), 1))
    assert order.hot_deal_id is None
    with pytest.raises(Conflict, match="sold out"):
        await place_order(ctx, PlaceOrder(pid, random_user(), 1))


@pytest.mark.parametrize("concurrency", [300])
async def test_concurrent_orders_never_oversell(mode_ctx: Context, new_product: ProductFactory,
                                                concurrency: int) -> None:
    pid = await _deal(mode_ctx, new_product, 40)

    async def buy(i: int) -> str:
        try:
            await place_order(mode_ctx, PlaceOrder(pid, f"c{i}-{uuid.uuid4().hex[:6]}", 1))
            return "ok"
        except Conflict as exc:
            return exc.code
    results = await asyncio.gather(*(buy(i) for i in range(concurrency)))
    assert results.count("ok") == 40 and results.count("sold_out") == concurrency - 40
    async with mode_ctx.engine.connect() as conn:
        n = len((await conn.execute(select(orders.c.id).where(
            orders.c.product_id == pid))).all())
    assert n == 40


async def test_cancel_releases_stock_exactly_once(mode_ctx: Context,
                                                  new_product: ProductFactory) -> None:
    pid = await _deal(mode_ctx, new_product, 1)
    order = await place_order(mode_ctx, PlaceOrder(pid, random_user(), 1))
    event_id = uuid.uuid4()
    results = await asyncio.gather(*(cancel_order(mode_ctx, order.id, CancelReason.PAYMENT_FAILED,
                                                  event_id=event_id) for _ in range(5)),
                                   cancel_order(mode_ctx, order.id, CancelReason.USER_CANCELLED))
    assert [r.outcome for r in results].count("applied") == 1
    # Exactly one unit is back on sale: one more buyer gets it, the next is sold out.
    await place_order(mode_ctx, PlaceOrder(pid, random_user(), 1))
    with pytest.raises(Conflict, match="sold out"):
        await place_order(mode_ctx, PlaceOrder(pid, random_user(), 1))


async def test_confirm_is_compare_and_set_and_late_payment_asks_for_refund(
        ctx: Context, new_product: ProductFactory) -> None:
    pid = await _deal(ctx, new_product, 2)
    paid = await place_order(ctx, PlaceOrder(pid, random_user(), 1))
    assert (await confirm_order(ctx, paid.id, payment_id="p1")).outcome == "applied"
    assert (await cancel_order(ctx, paid.id, CancelReason.EXPIRED)).outcome == "no_change"
    late = await place_order(ctx, PlaceOrder(pid, random_user(), 1))
    await cancel_order(ctx, late.id, CancelReason.EXPIRED)
    result = await confirm_order(ctx, late.id, payment_id="p2", amount=700)
    assert (result.outcome, result.status) == ("no_change", "CANCELLED")
    async with ctx.engine.connect() as conn:
        types = (await conn.execute(select(outbox.c.event_type).where(
            outbox.c.key == str(late.id)))).scalars().all()
    assert "RefundRequested" in types


async def test_expiry_sweeper_cancels_due_orders_and_frees_stock(
        ctx: Context, new_product: ProductFactory) -> None:
    short = Context(engine=ctx.engine, stock=ctx.stock, topics=ctx.topics,
                    settings=ctx.settings.model_copy(update={"reservation_ttl_seconds": 1}))
    pid = await _deal(ctx, new_product, 1)
    order = await place_order(short, PlaceOrder(pid, random_user(), 1))
    async with ctx.engine.begin() as conn:  # make it due without waiting
        await conn.execute(orders.update().where(orders.c.id == order.id).values(
            expires_at=orders.c.created_at))
    while await expire_due_orders(ctx, 500):
        pass
    async with ctx.engine.connect() as conn:
        row = (await conn.execute(select(orders.c.status, orders.c.cancel_reason).where(
            orders.c.id == order.id))).one()
    assert tuple(row) == ("CANCELLED", "expired")
    assert (await ctx.stock.snapshot(pid)).stock == 1


async def test_starting_a_deal_moves_stock_and_refuses_a_second_one(
        ctx: Context, new_product: ProductFactory) -> None:
    pid = await new_product(stock=10)
    await start_deal(ctx, StartDeal(pid, 6, 1))
    with pytest.raises(Conflict) as again:
        await start_deal(ctx, StartDeal(pid, 1, 1))
    assert again.value.code == "deal_already_active"
    async with ctx.engine.connect() as conn:
        stock = (await conn.execute(select(products.c.stock).where(
            products.c.id == pid))).scalar_one()
        deals = (await conn.execute(select(hot_deals.c.status).where(
            hot_deals.c.product_id == pid))).scalars().all()
    assert stock == 4 and deals == ["ACTIVE"]
    assert (await ctx.stock.snapshot(pid)).stock == 6


async def test_no_database_connection_releases_the_reservation_at_once(
        ctx: Context, new_product: ProductFactory) -> None:
    from hotdeal_core.db.engine import make_engine
    pid = await _deal(ctx, new_product, 1)
    tiny = ctx.settings.model_copy(update={"db_pool_size": 1, "db_max_overflow": 0,
                                          "db_pool_timeout": 0.2})
    engine = make_engine(tiny)
    starved = Context(engine=engine, stock=ctx.stock, settings=tiny, topics=ctx.topics)
    try:
        async with engine.connect():  # the only connection is taken
            with pytest.raises(DependencyUnavailable):  # the pool timed out
                await place_order(starved, PlaceOrder(pid, random_user(), 1))
    finally:
        await engine.dispose()
    snap = await ctx.stock.snapshot(pid)
    assert snap.stock == 1 and snap.reservations == []
