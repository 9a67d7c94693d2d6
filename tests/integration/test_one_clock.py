"""One clock: a reservation's stamp and the orphan sweep's grace period follow Redis's clock
(`TIME`), an order's expiry Postgres's (`now()`); an API host or a reconciler whose own clock
is ten minutes off changes neither, and cannot void a fresh order."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import datetime, timedelta, tzinfo

import pytest
from redis.asyncio import Redis
from sqlalchemy import select, text

from hotdeal_core.batching import Batcher
from hotdeal_core.db.tables import orders, outbox
from hotdeal_core.ports.orders import ReservedOrder
from hotdeal_core.stock.reserver import reservation_batcher
from hotdeal_core.usecases.context import Context
from hotdeal_core.usecases.deals import StartDeal, start_deal
from hotdeal_core.usecases.orders import PlaceOrder, place_order
from hotdeal_core.usecases.orphans import release_orphans
from hotdeal_core.usecases.views import OrderView
from tests.conftest import ProductFactory
from tests.random_refs import random_user

GRACE = 30.0
TEN_MINUTES = 600


@contextmanager
def host_clock_off_by(seconds: float) -> Iterator[None]:
    """This host's wall clock `seconds` off, however the code reads it (time.time, or
    datetime.now in any module of the project)."""
    real_time = time.time

    class Skewed(datetime):
        @classmethod
        def now(cls, tz: tzinfo | None = None) -> Skewed:
            moved = datetime.now(tz) + timedelta(seconds=seconds)
            return cls.fromtimestamp(moved.timestamp(), tz)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(time, "time", lambda: real_time() + seconds)
        for name, module in list(sys.modules.items()):
            if (name.split(".")[0] in {"hotdeal_core", "schemas", "order_api", "reconciler"}
                    and getattr(module, "datetime", None) is datetime):
                patch.setattr(module, "datetime", Skewed)
        yield


async def _redis_ms(redis: Redis) -> int:
    seconds, micros = await redis.time()
    return int(seconds) * 1000 + int(micros) // 1000


async def _pg_now(ctx: Context) -> datetime:
    async with ctx.engine.connect() as conn:
        now: datetime = (await conn.execute(text("SELECT now()"))).scalar_one()
    return now


async def _deal(ctx: Context, new_product: ProductFactory) -> int:
    pid = await new_product(stock=5, price=700)
    await start_deal(ctx, StartDeal(pid, 5, 1))
    return pid


def _group_commits(ctx: Context) -> Context:
    async def write(items: list[ReservedOrder]) -> list[OrderView | BaseException]:
        return await ctx.orders_db.write_reserved_orders(items, None)
    return replace(ctx, reserver=reservation_batcher(ctx.stock, 100),
                   order_writer=Batcher("orders", write))


@pytest.mark.parametrize("batched", [False, True], ids=["alone", "group-commit"])
@pytest.mark.parametrize("skew", [TEN_MINUTES, -TEN_MINUTES], ids=["ahead", "behind"])
async def test_a_host_clock_ten_minutes_off_moves_neither_the_reservation_nor_the_expiry(
        ctx: Context, redis: Redis, new_product: ProductFactory, skew: int,
        batched: bool) -> None:
    pid = await _deal(ctx, new_product)
    api = _group_commits(ctx) if batched else ctx
    writers = [w for w in (api.reserver, api.order_writer) if w is not None]
    for writer in writers:
        writer.start()
    redis_before, pg_before = await _redis_ms(redis), await _pg_now(ctx)
    try:
        with host_clock_off_by(skew):
            order = await place_order(api, PlaceOrder(pid, random_user(), 1))
    finally:
        for writer in writers:
            await writer.stop()
    redis_after, pg_after = await _redis_ms(redis), await _pg_now(ctx)

    [reservation] = (await ctx.stock.snapshot(pid)).reservations
    assert redis_before <= reservation.reserved_at_ms <= redis_after
    ttl = timedelta(seconds=ctx.settings.reservation_ttl_seconds)
    assert pg_before + ttl <= order.expires_at <= pg_after + ttl
    async with ctx.engine.connect() as conn:
        stored = (await conn.execute(select(orders.c.expires_at).where(
            orders.c.id == order.id))).scalar_one()
        event = (await conn.execute(select(outbox.c.payload).where(
            outbox.c.key == str(order.id), outbox.c.event_type == "OrderPlaced"))).scalar_one()
    assert stored == order.expires_at == datetime.fromisoformat(event["expires_at"])


class _StillWriting(Exception):
    """Stops place_order between its reservation and its order's write."""


def _still_writing() -> None:
    raise _StillWriting


@pytest.mark.parametrize(("api_skew", "sweep_skew"), [(-TEN_MINUTES, 0), (0, TEN_MINUTES)],
                         ids=["api-host-behind", "reconciler-ahead"])
async def test_the_orphan_sweep_never_voids_a_fresh_reservation_for_a_skewed_clock(
        ctx: Context, new_product: ProductFactory, api_skew: int, sweep_skew: int) -> None:
    pid = await _deal(ctx, new_product)
    with host_clock_off_by(api_skew), pytest.raises(_StillWriting):
        await place_order(replace(ctx, after_reserve=_still_writing),
                          PlaceOrder(pid, random_user(), 1))
    [fresh] = (await ctx.stock.snapshot(pid)).reservations

    with host_clock_off_by(sweep_skew):
        await release_orphans(ctx, GRACE)
    assert (await ctx.stock.snapshot(pid)).reservations == [fresh]
    async with ctx.engine.connect() as conn:
        voided = (await conn.execute(select(orders.c.id).where(
            orders.c.id == fresh.order_id))).first()
    assert voided is None  # its order may still be written
    await ctx.stock.release(pid, fresh.order_id)  # no orphan left for other tests' sweeps


@pytest.mark.parametrize("skew", [TEN_MINUTES, -TEN_MINUTES], ids=["ahead", "behind"])
async def test_a_deal_started_from_a_skewed_host_ends_by_postgres_clock(
        ctx: Context, new_product: ProductFactory, skew: int) -> None:
    pid = await new_product(stock=5, price=700)
    before = await _pg_now(ctx)
    with host_clock_off_by(skew):
        started = await start_deal(ctx, StartDeal(pid, 5, 1, duration_seconds=60))
    after = await _pg_now(ctx)
    assert started.ends_at is not None
    assert before + timedelta(seconds=60) <= started.ends_at <= after + timedelta(seconds=60)
    async with ctx.engine.connect() as conn:
        stored = (await conn.execute(text("SELECT ends_at FROM hot_deals WHERE id = :d"),
                                     {"d": started.deal_id})).scalar_one()
    assert stored == started.ends_at
