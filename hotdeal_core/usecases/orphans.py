"""The orphan sweep: release reservations whose order row was never written (the API died
between the reservation and the order write).

An orphan's order id is first written as CANCELLED (orphaned) in Postgres (`_void`): the
primary key then refuses the API's late insert of the same order, so the units can be
released without racing it. The sweep reads only the reservations that are due (a sorted
set by reservation time); one whose order is PENDING is due again only once the order
should have expired.

Time is Redis's (`TIME` stamps each reservation and measures the grace period, see `due`)
and Postgres's (`expires_at`), never this host's: a skewed host cannot void fresh orders.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from uuid import UUID

from sqlalchemy import any_, func, select
from sqlalchemy.dialects.postgresql import insert

from hotdeal_core.db.tables import hot_deals, orders, products
from hotdeal_core.domain import CancelReason, DealStatus, OrderStatus, StockBackend
from hotdeal_core.stock.port import ReleaseOutcome, Reservation
from hotdeal_core.usecases.books import order_ids_param
from hotdeal_core.usecases.context import Context

log = logging.getLogger(__name__)

ORPHAN_SWEEP_BATCH = 500


@dataclass(frozen=True, slots=True)
class OrphanSweep:
    released: int  # units given back
    examined: int  # due reservations looked at
    more: bool  # a deal had a full batch due: sweep again at once


async def release_orphans(ctx: Context, grace_seconds: float,
                          batch: int = ORPHAN_SWEEP_BATCH) -> OrphanSweep:
    """Reservations older than the grace period whose order row was never written (the API
    died in between) are voided in Postgres, then released. Reservations of orders already
    cancelled are released too (the release step was interrupted), those of confirmed
    orders forgotten. A reservation whose order is PENDING is looked at again only once
    the order should have expired, so each sweep reads just the reservations that are due,
    never every live one."""
    async with ctx.engine.connect() as conn:
        live = (await conn.execute(select(hot_deals.c.id, hot_deals.c.product_id).where(
            hot_deals.c.status == DealStatus.ACTIVE,
            hot_deals.c.stock_backend == StockBackend.REDIS))).all()
    grace_ms = int(grace_seconds * 1000)
    released = examined = 0
    more = False
    for deal_id, product_id in live:
        due = await ctx.stock.due(product_id, grace_ms, batch)
        if due.deal_id != deal_id or not due.reservations:
            continue
        examined += len(due.reservations)
        more = more or len(due.reservations) == batch
        async with ctx.engine.connect() as conn:
            rows = (await conn.execute(
                select(orders.c.id, orders.c.status, orders.c.expires_at)
                .where(orders.c.id == any_(order_ids_param(due.reservations))))).all()
        known = {row.id: row for row in rows}
        later: dict[UUID, int] = {}
        for r in due.reservations:
            row = known.get(r.order_id)
            if row is None and not await _void(ctx, deal_id, product_id, r):
                continue  # the order row appeared after all: not an orphan
            if row is not None and row.status == OrderStatus.PENDING:
                later[r.order_id] = max(due.now_ms, int(row.expires_at.timestamp() * 1000))
            elif row is not None and row.status == OrderStatus.CONFIRMED:
                await ctx.stock.forget(product_id, r.order_id)
            elif await ctx.stock.release(product_id, r.order_id) is ReleaseOutcome.RELEASED:
                released += r.quantity
                log.warning("released orphan reservation %s (%d units)", r.order_id, r.quantity)
        await ctx.stock.reschedule(product_id, later)
    return OrphanSweep(released, examined, more)


async def _void(ctx: Context, deal_id: int, product_id: int, r: Reservation) -> bool:
    """Write the orphan's order id as CANCELLED, so the API can never write it later."""
    async with ctx.engine.begin() as conn:
        price = (await conn.execute(select(products.c.price).where(
            products.c.id == product_id))).scalar_one()
        inserted = (await conn.execute(insert(orders).values(
            id=r.order_id, product_id=product_id, hot_deal_id=deal_id, user_id=r.user_id,
            quantity=r.quantity, unit_price=price, status=OrderStatus.CANCELLED,
            cancel_reason=CancelReason.ORPHANED, expires_at=func.now())
            .on_conflict_do_nothing(index_elements=["id"]).returning(orders.c.id))).first()
    return inserted is not None
