"""The orphan sweep reads only the reservations that are due: an orphan (no order row) is
voided and released, a PENDING order's reservation is looked at again only once the order
should have expired, a confirmed one is forgotten, a cancelled one released."""

from __future__ import annotations

import uuid

from sqlalchemy import select, text

from hotdeal_core.db.tables import orders
from hotdeal_core.usecases.context import Context
from hotdeal_core.usecases.deals import StartDeal, start_deal
from hotdeal_core.usecases.orders import PlaceOrder, place_order
from hotdeal_core.usecases.orphans import release_orphans
from tests.conftest import ProductFactory
from tests.random_refs import random_user

GRACE = 30.0


async def _long_ago(ctx: Context, pid: int) -> int:
    """Before the grace period, by the store's clock (the one the sweep judges by)."""
    return (await ctx.stock.due(pid, 0, 0)).now_ms - int(2 * GRACE * 1000)


async def test_the_sweep_voids_orphans_and_reschedules_pending_orders(
        ctx: Context, new_product: ProductFactory) -> None:
    pid = await new_product(stock=10, price=700)
    await start_deal(ctx, StartDeal(pid, 10, 5))
    old_ms = await _long_ago(ctx, pid)  # reserved before the grace period
    orphan = uuid.uuid4()
    await ctx.stock.reserve(pid, orphan, random_user(), 2, None)  # the API died here
    pending = await place_order(ctx, PlaceOrder(pid, random_user(), 1))
    confirmed = await place_order(ctx, PlaceOrder(pid, random_user(), 1))
    async with ctx.engine.begin() as conn:  # confirmed, but its forget step never ran
        await conn.execute(text("UPDATE orders SET status = 'CONFIRMED' WHERE id = :id"),
                           {"id": confirmed.id})
    await ctx.stock.reschedule(pid, {orphan: old_ms, pending.id: old_ms, confirmed.id: old_ms})

    sweep = await release_orphans(ctx, GRACE)
    assert sweep.released == 2 and sweep.examined >= 3
    async with ctx.engine.connect() as conn:
        voided = (await conn.execute(select(orders.c.status, orders.c.cancel_reason).where(
            orders.c.id == orphan))).one()
    assert tuple(voided) == ("CANCELLED", "orphaned")
    snap = await ctx.stock.snapshot(pid)
    assert snap.stock == 8 and [r.order_id for r in snap.reservations] == [pending.id]
    # The PENDING order's reservation is due again only after its expiry (+ grace).
    assert (await ctx.stock.due(pid, int(GRACE * 1000), 100)).reservations == []
    assert (await release_orphans(ctx, GRACE)).released == 0


async def test_the_sweep_releases_what_an_interrupted_cancellation_left(
        ctx: Context, new_product: ProductFactory) -> None:
    pid = await new_product(stock=3, price=700)
    await start_deal(ctx, StartDeal(pid, 3, 1))
    order = await place_order(ctx, PlaceOrder(pid, random_user(), 1))
    async with ctx.engine.begin() as conn:  # cancelled in Postgres; the release never ran
        await conn.execute(text("UPDATE orders SET status = 'CANCELLED', "
                                "cancel_reason = 'expired' WHERE id = :id"), {"id": order.id})
    await ctx.stock.reschedule(pid, {order.id: await _long_ago(ctx, pid)})
    assert (await release_orphans(ctx, GRACE)).released == 1
    assert (await ctx.stock.peek(pid)).stock == 3
