"""The flush: once a deal has ended, give back what it did not sell, exactly once.

The orders are the truth of what was sold: `returned = initial - pending - confirmed` goes
back to the product, whatever Redis says; what Redis still holds (stock, orphan and
cancelled reservations) is the cross-check (`balanced`). The flush is one Postgres
transaction under the deal fence and the deal row lock (`books.deal_row(lock=True)`: no
order of the deal appears or changes status meanwhile); a re-run finds RECONCILED and only
drops the Redis keys.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncConnection

from hotdeal_core.db.tables import hot_deals, reconciliations
from hotdeal_core.domain import DealStatus, OrderStatus, StockBackend
from hotdeal_core.messaging.outbox import add_event
from hotdeal_core.usecases.books import deal_row, give_back_to_product, held_units, units_by_status
from hotdeal_core.usecases.context import Context
from hotdeal_core.usecases.deals import end_deal
from schemas.events import HotDealReconciled

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class FlushReport:
    deal_id: int
    product_id: int
    returned: int
    redis_stock: int
    pending: int
    confirmed: int
    balanced: bool
    already: bool


async def flush_deal(ctx: Context, deal_id: int) -> FlushReport:
    """Give back what the ended deal did not sell, exactly once. Safe to re-run."""
    async with ctx.engine.connect() as conn:
        deal = await deal_row(conn, deal_id)
    product_id = int(deal.product_id)
    if deal.status == DealStatus.ACTIVE:
        await end_deal(ctx, product_id)
    elif deal.stock_backend == StockBackend.REDIS and deal.status == DealStatus.ENDED:
        await ctx.stock.close(product_id, deal_id)
    async with ctx.engine.begin() as conn:
        deal = await deal_row(conn, deal_id, lock=True)
        if deal.status == DealStatus.RECONCILED:
            report = await _previous_report(conn, deal)
        else:
            report = await _settle(ctx, conn, deal)
    if not report.already:
        ctx.outbox_written()
    if deal.stock_backend == StockBackend.REDIS:
        await ctx.stock.drop(product_id, deal_id)
    return report


async def _settle(ctx: Context, conn: AsyncConnection, deal: Any) -> FlushReport:
    units = await units_by_status(conn, deal.id)
    pending, confirmed = units[OrderStatus.PENDING], units[OrderStatus.CONFIRMED]
    # The orders are the truth of what was sold; everything else goes back.
    returned = int(deal.initial_stock) - pending - confirmed
    redis_stock, orphans, cancelled_held = int(deal.remaining_stock), 0, 0
    if deal.stock_backend == StockBackend.REDIS:
        held = await held_units(ctx, conn, deal.id, deal.product_id)
        redis_stock, orphans, cancelled_held = held.stock, held.orphaned, held.cancelled
        state_found = held.state_found
    else:
        state_found = True
    # Cross-check: what the stock store still holds must be exactly what goes back.
    balanced = state_found and redis_stock + orphans + cancelled_held == returned
    await give_back_to_product(conn, deal.product_id, returned)
    await conn.execute(hot_deals.update().where(hot_deals.c.id == deal.id).values(
        status=DealStatus.RECONCILED, returned_stock=returned, remaining_stock=0,
        reconciled_at=text("now()"), updated_at=text("now()"),
        ended_at=func.coalesce(hot_deals.c.ended_at, func.now())))
    await conn.execute(reconciliations.insert().values(
        hot_deal_id=deal.id, initial_stock=deal.initial_stock, redis_stock=redis_stock,
        orphans_released=orphans, cancelled_released=cancelled_held, returned_stock=returned,
        pending_units=pending, confirmed_units=confirmed, balanced=balanced,
        details=None if state_found else "no Redis state at flush: figures from Postgres"))
    await add_event(conn, ctx.topics, HotDealReconciled(
        hot_deal_id=deal.id, product_id=deal.product_id, initial_stock=deal.initial_stock,
        returned_stock=returned, pending_units=pending, confirmed_units=confirmed,
        balanced=balanced))
    log.info("deal %s reconciled: returned %d, pending %d, confirmed %d, balanced %s",
             deal.id, returned, pending, confirmed, balanced)
    return FlushReport(deal.id, deal.product_id, returned, redis_stock, pending, confirmed,
                       balanced, already=False)


async def _previous_report(conn: AsyncConnection, deal: Any) -> FlushReport:
    rec = (await conn.execute(select(reconciliations).where(
        reconciliations.c.hot_deal_id == deal.id))).one()
    return FlushReport(deal.id, deal.product_id, rec.returned_stock, rec.redis_stock,
                       rec.pending_units, rec.confirmed_units, rec.balanced, already=True)
