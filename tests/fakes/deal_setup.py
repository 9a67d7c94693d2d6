"""A Context on the fakes (deals port, stock store) and the deal scenes the branch tests
of tests/unit/test_{deal,recovery,flush}_branches.py start from."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from datetime import timedelta
from uuid import UUID

from redis.exceptions import ConnectionError as RedisDown
from sqlalchemy.ext.asyncio import create_async_engine

from hotdeal_core.domain import OrderStatus
from hotdeal_core.settings import Settings
from hotdeal_core.stock.fake import FakeStockStore
from hotdeal_core.stock.port import ReserveOutcome
from hotdeal_core.usecases.context import Context
from hotdeal_core.usecases.deals import StartDeal, start_deal
from tests.fakes.deals import FakeDeals
from tests.random_refs import random_user

# Never connected: the use cases under test reach Postgres only through ctx.deals_db.
_NO_POSTGRES = create_async_engine("postgresql+asyncpg://unused@127.0.0.1:1/unused")


def fake_ctx(*, redis: bool = True) -> Context:
    """`redis`: deals keep their stock in the (fake) stock store, else in Postgres."""
    settings = Settings(_env_file=None, hotdeal_stock_redis=redis)
    return Context(engine=_NO_POSTGRES, stock=FakeStockStore(), settings=settings,
                   deals_db=FakeDeals())


def fake_db(ctx: Context) -> FakeDeals:
    assert isinstance(ctx.deals_db, FakeDeals)
    return ctx.deals_db


def fake_store(ctx: Context) -> FakeStockStore:
    assert isinstance(ctx.stock, FakeStockStore)
    return ctx.stock


def minutes(n: int) -> timedelta:
    return timedelta(minutes=n)


async def open_deal(ctx: Context, stock: int = 10,
                    duration: float | None = None) -> tuple[int, int]:
    """(product id, deal id) of a new deal; its product holds 100 units at 700."""
    pid = fake_db(ctx).add_product(100, price=700)
    return pid, (await start_deal(ctx, StartDeal(pid, stock, 2, duration))).deal_id


async def due_deals(ctx: Context, n: int) -> list[tuple[int, int]]:
    """`n` deals whose end passed a minute ago (by the fake Postgres clock)."""
    deals = [await open_deal(ctx, duration=60) for _ in range(n)]
    fake_db(ctx).clock_offset += minutes(2)
    return deals


async def place(ctx: Context, pid: int, deal_id: int, quantity: int = 1,
                status: OrderStatus = OrderStatus.PENDING, key: str | None = None) -> UUID:
    """As place_order: the reservation, then its order row."""
    order_id, user = uuid.uuid4(), random_user()
    reserved = await ctx.stock.reserve(pid, order_id, user, quantity, key)
    assert reserved.outcome is ReserveOutcome.RESERVED
    return fake_db(ctx).add_order(deal_id, quantity, status, user, key, order_id)


async def ended_deal(ctx: Context, stock: int = 10) -> tuple[int, int, list[UUID]]:
    """A deal with one PENDING (2 units), one CONFIRMED and one CANCELLED order, ended."""
    pid, deal_id = await open_deal(ctx, stock=stock)
    orders = [await place(ctx, pid, deal_id, 2),
              await place(ctx, pid, deal_id, 1, OrderStatus.CONFIRMED)]
    cancelled = await place(ctx, pid, deal_id, 1)
    await ctx.stock.release(pid, cancelled)
    fake_db(ctx).orders[cancelled].status = OrderStatus.CANCELLED
    await ctx.deals_db.mark_ended(await ctx.deals_db.deal(deal_id), "stopped")
    return pid, deal_id, orders


def lose_reservation(ctx: Context, pid: int, order_id: UUID) -> None:
    """Undo one reservation in the store, as a promoted replica that never received it."""
    deal = fake_store(ctx).deals[pid]
    lost = deal.res.pop(order_id)
    deal.since.pop(order_id)
    deal.users[lost.user_id] -= lost.quantity
    deal.stock += lost.quantity


def failing(ctx: Context, method: str, product_id: int) -> None:
    """The stock store's `method` fails for this product (its Redis node unreachable)."""
    store = fake_store(ctx)
    real: Callable[..., Awaitable[object]] = getattr(store, method)

    async def call(pid: int, *args: object) -> object:
        if pid == product_id:
            raise RedisDown("this deal's Redis node is unreachable")
        return await real(pid, *args)
    setattr(store, method, call)
