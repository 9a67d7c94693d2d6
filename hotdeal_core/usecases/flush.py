"""The flush: once a deal has ended, give back what it did not sell, exactly once (the
rules: docs/architecture.md, "Deals, recovery and the flush")."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from hotdeal_core.domain import DealStatus, OrderStatus, StockBackend
from hotdeal_core.ports.deals import LockedDeal, Reconciliation
from hotdeal_core.usecases.books import each_apart, held_units
from hotdeal_core.usecases.context import Context
from hotdeal_core.usecases.deals import stop_deal

log = logging.getLogger(__name__)

# An ENDED deal not reconciled this long after it ended: its HotDealEnded flush was lost.
STUCK_AFTER_SECONDS = 10


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
    deal = await ctx.deals_db.deal(deal_id)
    if deal.status is DealStatus.ACTIVE:
        await stop_deal(ctx, deal, "stopped")
    elif deal.stock_backend is StockBackend.REDIS and deal.status is DealStatus.ENDED:
        await ctx.stock.close(deal.product_id, deal_id)
    async with ctx.deals_db.locked(deal_id) as books:
        if books.deal.status is DealStatus.RECONCILED:
            report = _report(books, await books.reconciliation(), already=True)
        else:
            report = _report(books, await _settle(ctx, books), already=False)
    if not report.already:
        ctx.outbox_written()
    if deal.stock_backend is StockBackend.REDIS:
        await ctx.stock.drop(deal.product_id, deal_id)
    return report


async def _settle(ctx: Context, books: LockedDeal) -> Reconciliation:
    """The orders are the truth of what was sold: `initial - pending - confirmed` goes
    back, whatever Redis says; what Redis still holds is the cross-check (`balanced`)."""
    deal = books.deal
    units = await books.units_by_status()
    pending, confirmed = units[OrderStatus.PENDING], units[OrderStatus.CONFIRMED]
    returned = deal.initial_stock - pending - confirmed
    held_stock, orphans, cancelled_held, state_found = deal.remaining_stock, 0, 0, True
    if deal.stock_backend is StockBackend.REDIS:
        held = await held_units(ctx.stock, books, deal)
        held_stock, orphans, cancelled_held = held.stock, held.orphaned, held.cancelled
        state_found = held.state_found
    balanced = state_found and held_stock + orphans + cancelled_held == returned
    rec = Reconciliation(
        deal.initial_stock, held_stock, orphans, cancelled_held, returned, pending, confirmed,
        balanced, None if state_found else "no Redis state at flush: figures from Postgres")
    await books.reconcile(rec)
    log.info("deal %s reconciled: returned %d, pending %d, confirmed %d, balanced %s",
             deal.id, returned, pending, confirmed, balanced)
    return rec


def _report(books: LockedDeal, rec: Reconciliation, *, already: bool) -> FlushReport:
    return FlushReport(books.deal.id, books.deal.product_id, rec.returned_stock,
                       rec.redis_stock, rec.pending_units, rec.confirmed_units, rec.balanced,
                       already)


async def flush_stuck(ctx: Context) -> list[FlushReport]:
    """Safety net: ENDED deals not reconciled a while after they ended are flushed here."""
    async def flush(deal_id: int) -> FlushReport:
        return await flush_deal(ctx, deal_id)
    stuck = await ctx.deals_db.stuck_deal_ids(STUCK_AFTER_SECONDS)
    return await each_apart(stuck, flush, "flushing a stuck deal")
