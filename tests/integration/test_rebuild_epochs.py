"""A rebuild's epoch is committed in Postgres before any Redis state carries it, is never
used twice, and a Redis state whose epoch is ahead of Postgres (a rebuild whose commit was
lost) is found and rebuilt: orders are accepted again, and none reserved on that orphaned
state is written (it would be sold twice). Real Postgres and Redis."""

from __future__ import annotations

from uuid import UUID

import pytest
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeout
from sqlalchemy import func, select

from hotdeal_core.db.tables import hot_deals, orders
from hotdeal_core.domain import OrderStatus
from hotdeal_core.errors import Conflict
from hotdeal_core.stock.port import RebuiltState, ReserveResult
from hotdeal_core.stock.redis_store import STATE, RedisStockStore, deal_keys
from hotdeal_core.usecases.context import Context
from hotdeal_core.usecases.deals import StartDeal, start_deal
from hotdeal_core.usecases.orders import PlaceOrder, place_order
from hotdeal_core.usecases.recovery import recover_deal, recover_lost_states
from tests.conftest import ProductFactory
from tests.random_refs import random_user


async def _deal(ctx: Context, new_product: ProductFactory, stock: int) -> tuple[int, int]:
    pid = await new_product(stock=stock, price=700)
    started = await start_deal(ctx, StartDeal(pid, stock, 1))
    return pid, started.deal_id


async def _pg_epoch(ctx: Context, deal_id: int) -> int:
    async with ctx.engine.connect() as conn:
        return int((await conn.execute(select(hot_deals.c.epoch).where(
            hot_deals.c.id == deal_id))).scalar_one())


async def _sold(ctx: Context, deal_id: int) -> int:
    async with ctx.engine.connect() as conn:
        return int((await conn.execute(select(func.coalesce(func.sum(orders.c.quantity), 0))
                                       .where(orders.c.hot_deal_id == deal_id,
                                              orders.c.status.in_((OrderStatus.PENDING,
                                                                   OrderStatus.CONFIRMED)))))
                   .scalar_one())


class _ReplyLost(RedisStockStore):
    """The rebuild script runs, then its reply is lost (a Redis timeout after the script)."""

    async def rebuild(self, product_id: int, state: RebuiltState) -> bool:
        await super().rebuild(product_id, state)
        raise RedisTimeout("Timeout reading from socket")


class _RedisDown(RedisStockStore):
    """The rebuild script never reaches Redis."""

    async def rebuild(self, product_id: int, state: RebuiltState) -> bool:
        raise RedisConnectionError("Connection refused")


class _RebuiltMeanwhile(RedisStockStore):
    """Each reservation is followed by a `hotdeal deal recover` of its deal before its order
    is written (the order's insert waits on the rebuild's fence, then runs)."""

    def __init__(self, redis: Redis, recovering: Context) -> None:
        super().__init__(redis)
        self.recovering = recovering
        self.reserved: list[ReserveResult] = []

    async def reserve(self, product_id: int, order_id: UUID, user_id: str, quantity: int,
                      idempotency_key: str | None) -> ReserveResult:
        result = await super().reserve(product_id, order_id, user_id, quantity,
                                       idempotency_key)
        self.reserved.append(result)
        await recover_deal(self.recovering, product_id)
        return result


def _with(ctx: Context, store: RedisStockStore) -> Context:
    return Context(engine=ctx.engine, stock=store, settings=ctx.settings, topics=ctx.topics)


async def test_a_redis_state_ahead_of_postgres_is_rebuilt_and_orders_are_accepted_again(
        ctx: Context, redis: Redis, new_product: ProductFactory) -> None:
    pid, deal_id = await _deal(ctx, new_product, 5)
    epoch = await _pg_epoch(ctx, deal_id)
    await redis.hset(deal_keys(pid)[STATE], "epoch", epoch + 1)  # a rebuild's lost commit
    with pytest.raises(Conflict) as fenced:
        await place_order(ctx, PlaceOrder(pid, random_user(), 1))
    assert fenced.value.code == "deal_not_active"

    [report] = [r for r in await recover_lost_states(ctx) if r.deal_id == deal_id]
    assert "ahead" in report.reason and report.epoch == epoch + 2  # above both, never reused
    assert await _pg_epoch(ctx, deal_id) == (await ctx.stock.peek(pid)).epoch == epoch + 2
    order = await place_order(ctx, PlaceOrder(pid, random_user(), 1))
    assert order.hot_deal_id == deal_id
    assert [r for r in await recover_lost_states(ctx) if r.deal_id == deal_id] == []


async def test_an_order_reserved_on_an_orphaned_state_is_not_written_after_a_recover(
        ctx: Context, redis: Redis, new_product: ProductFactory) -> None:
    pid, deal_id = await _deal(ctx, new_product, 3)
    first = await place_order(ctx, PlaceOrder(pid, random_user(), 1))
    epoch = await _pg_epoch(ctx, deal_id)
    await redis.hset(deal_keys(pid)[STATE], "epoch", epoch + 1)  # a rebuild's lost commit
    store = _RebuiltMeanwhile(redis, ctx)

    with pytest.raises(Conflict) as fenced:
        await place_order(_with(ctx, store), PlaceOrder(pid, random_user(), 1))
    assert fenced.value.code == "deal_not_active"
    assert [r.epoch for r in store.reserved] == [epoch + 1]
    assert await _pg_epoch(ctx, deal_id) > epoch + 1  # the orphaned epoch is never reused
    snap = await ctx.stock.snapshot(pid)
    assert snap.epoch == await _pg_epoch(ctx, deal_id)
    assert [r.order_id for r in snap.reservations] == [first.id]
    assert snap.stock + await _sold(ctx, deal_id) == 3  # every unit counted once: no oversell


async def test_a_rebuild_whose_redis_reply_was_lost_leaves_its_epoch_in_postgres(
        ctx: Context, redis: Redis, new_product: ProductFactory) -> None:
    pid, deal_id = await _deal(ctx, new_product, 4)
    epoch = await _pg_epoch(ctx, deal_id)
    with pytest.raises(RedisTimeout):
        await recover_deal(_with(ctx, _ReplyLost(redis)), pid)

    assert await _pg_epoch(ctx, deal_id) == (await ctx.stock.peek(pid)).epoch == epoch + 1
    await place_order(ctx, PlaceOrder(pid, random_user(), 1))  # not fenced
    again = await recover_deal(ctx, pid)
    assert again.epoch == epoch + 2 and again.stock == 3



async def test_a_rebuild_that_never_reached_redis_is_healed_by_the_next_round(
        ctx: Context, redis: Redis, new_product: ProductFactory) -> None:
    pid, deal_id = await _deal(ctx, new_product, 4)
    epoch = await _pg_epoch(ctx, deal_id)
    with pytest.raises(RedisConnectionError):
        await recover_deal(_with(ctx, _RedisDown(redis)), pid)

    assert await _pg_epoch(ctx, deal_id) == epoch + 1  # Postgres ahead: orders fenced
    [report] = [r for r in await recover_lost_states(ctx) if r.deal_id == deal_id]
    assert report.epoch == epoch + 2 == (await ctx.stock.peek(pid)).epoch
    await place_order(ctx, PlaceOrder(pid, random_user(), 1))
