"""The orphan sweep: release reservations whose order row was never written (the API died
between the reservation and the order write); time is Redis's and Postgres's, never this
host's (docs/architecture.md, "Orders")."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from uuid import UUID

from hotdeal_core.domain import OrderStatus
from hotdeal_core.stock.port import ReleaseOutcome
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
    live = await ctx.orders_db.live_redis_deals()
    grace_ms = int(grace_seconds * 1000)
    released = examined = 0
    more = False
    for deal_id, product_id in live:
        due = await ctx.stock.due(product_id, grace_ms, batch)
        if due.deal_id != deal_id or not due.reservations:
            continue
        examined += len(due.reservations)
        more = more or len(due.reservations) == batch
        known = await ctx.orders_db.order_states([r.order_id for r in due.reservations])
        later: dict[UUID, int] = {}
        for r in due.reservations:
            state = known.get(r.order_id)
            if state is None and not await ctx.orders_db.void_orphan(
                    deal_id, product_id, r.order_id, r.user_id, r.quantity):
                continue  # the order row appeared after all: not an orphan
            if state is not None and state.status == OrderStatus.PENDING:
                later[r.order_id] = max(due.now_ms, int(state.expires_at.timestamp() * 1000))
            elif state is not None and state.status == OrderStatus.CONFIRMED:
                await ctx.stock.forget(product_id, r.order_id)
            elif await ctx.stock.release(product_id, r.order_id) is ReleaseOutcome.RELEASED:
                released += r.quantity
                log.warning("released orphan reservation %s (%d units)", r.order_id, r.quantity)
        await ctx.stock.reschedule(product_id, later)
    return OrphanSweep(released, examined, more)
