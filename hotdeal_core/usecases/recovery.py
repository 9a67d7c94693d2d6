"""Recovery: rebuild an ACTIVE deal's lost Redis state from Postgres under a new epoch.

The new epoch is committed in Postgres first, on its own (`_allot_epoch`), above both the
deal's epoch and the one Redis holds: no state ever carries an epoch Postgres has not
committed, and no two rebuilds share one (an orphaned state of equal epoch would let orders
reserved on it be written). Then the rebuild owns the deal fence and the deal row lock
(`books.deal_row(lock=True)`): no order of the deal appears or changes status while it
reads them, so the rebuilt state is exact. The new epoch fences every reservation made on
an older state: its order insert is refused (the API answers deal_not_active).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncConnection

from hotdeal_core.db.tables import hot_deals, orders, products
from hotdeal_core.domain import DealStatus, OrderStatus, StockBackend
from hotdeal_core.errors import Conflict
from hotdeal_core.stock.port import DealSnapshot, RebuiltState, Reservation
from hotdeal_core.usecases.books import deal_row, units_by_status
from hotdeal_core.usecases.context import Context

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class RecoverReport:
    deal_id: int
    product_id: int
    epoch: int
    stock: int
    reservations: int
    reason: str = "asked for"  # or why recover_lost_states rebuilt it (`_lost_writes`)


async def recover_deal(ctx: Context, product_id: int) -> RecoverReport:
    """Rebuild an ACTIVE deal's Redis state from Postgres under a new epoch.

    stock = initial - units of PENDING and CONFIRMED orders; per-user counts from the same
    orders; one reservation per PENDING order. The new epoch fences every reservation made
    on the old state: its order insert is refused (the API answers deal_not_active).
    """
    report = await _rebuild(ctx, product_id, only_if_lost=False)
    assert report is not None
    return report


async def _rebuild(ctx: Context, product_id: int, *, only_if_lost: bool) -> RecoverReport | None:
    """`only_if_lost`: look again under the exclusive deal fence and rebuild only if the
    state lost writes; None if it has not (a healthy deal is never rebuilt on a race)."""
    allotted = await _allot_epoch(ctx, product_id, only_if_lost=only_if_lost)
    if allotted is None:
        return None
    deal_id, epoch, reason = allotted
    # If this fails, Postgres is ahead of Redis: `_lost_writes` flags it, the next round heals.
    async with ctx.engine.begin() as conn:
        deal = await deal_row(conn, deal_id, lock=True)
        if deal.status != DealStatus.ACTIVE:
            raise Conflict("deal_not_active", f"deal {deal_id} ended during its rebuild")
        if deal.epoch != epoch:
            raise Conflict("invalid_state", f"deal {deal_id} was rebuilt meanwhile "
                                            f"(epoch {deal.epoch})")
        state = await _state_from_orders(conn, deal, epoch)
        if not await ctx.stock.rebuild(product_id, state):
            raise Conflict("invalid_state", "a newer rebuild of this deal is already in Redis")
    log.warning("deal %s: Redis state rebuilt from Postgres (epoch %d, stock %d): %s",
                deal_id, epoch, state.stock, reason)
    return RecoverReport(deal_id, product_id, epoch, state.stock, len(state.reservations),
                         reason)


async def _allot_epoch(ctx: Context, product_id: int, *,
                       only_if_lost: bool) -> tuple[int, int, str] | None:
    """Commit the rebuild's epoch: (deal id, epoch, reason), or None if `only_if_lost` and
    nothing was lost. Above the one Redis holds too, so never one a state already carried."""
    async with ctx.engine.begin() as conn:
        deal_id = (await conn.execute(select(hot_deals.c.id).where(
            hot_deals.c.product_id == product_id,
            hot_deals.c.status == DealStatus.ACTIVE))).scalar_one_or_none()
        if deal_id is None:
            raise Conflict("deal_not_active", f"product {product_id} has no active deal")
        deal = await deal_row(conn, int(deal_id), lock=True)
        if deal.stock_backend != StockBackend.REDIS:
            raise Conflict("invalid_state", "this deal keeps its stock in Postgres")
        snap = await ctx.stock.peek(product_id)
        reason = "asked for"
        if only_if_lost:
            units = await units_by_status(conn, deal.id)
            lost = _lost_writes(deal, snap,
                                units[OrderStatus.PENDING] + units[OrderStatus.CONFIRMED])
            if lost is None:
                return None
            reason = lost
        epoch = max(int(deal.epoch), snap.epoch) + 1
        await conn.execute(hot_deals.update().where(hot_deals.c.id == deal.id).values(
            epoch=epoch, updated_at=text("now()")))
    return int(deal.id), epoch, reason


def _lost_writes(deal: Any, snap: DealSnapshot, sold: int | None) -> str | None:
    """Why an ACTIVE deal's Redis state must be rebuilt, or None if it holds every write.

    A reservation is written in Redis before its order row commits, and a cancellation
    commits before its units go back, so a healthy state never offers more than Postgres
    says is left: stock <= initial - units of PENDING and CONFIRMED orders (`sold`). More
    means Redis lost reservations whose orders exist (an asynchronous replica promoted in
    a failover): left alone, those units would be sold twice. Exact only under the
    exclusive deal fence (no order appears or is cancelled meanwhile). Read without it, a
    false alarm is possible (an order committed between the two reads), hence the fenced
    second look; so is a loss seen one round late (a cancellation committed between them).
    An epoch ahead of Postgres is never written since epochs commit first (`_allot_epoch`),
    but one left by an older release, or by a restored Postgres, would fence every order.
    `sold` None: not read yet (status and epoch only).
    """
    if snap.status is None or snap.deal_id != deal.id:
        return "no Redis state for this deal"
    if snap.epoch < deal.epoch:
        return f"Redis state of epoch {snap.epoch}, the deal is at {deal.epoch}"
    if snap.epoch > deal.epoch:  # every order is fenced until a rebuild passes both
        return (f"Redis state of epoch {snap.epoch} is ahead of the deal's {deal.epoch} "
                f"(a rebuild whose epoch was never committed)")
    if sold is not None and snap.status == "open" and snap.stock > deal.initial_stock - sold:
        return (f"Redis offers {snap.stock} units, Postgres leaves "
                f"{deal.initial_stock - sold}: reservations lost")
    return None


async def _sold_units(conn: AsyncConnection, deal_id: int) -> int:
    return int((await conn.execute(
        select(func.coalesce(func.sum(orders.c.quantity), 0)).where(
            orders.c.hot_deal_id == deal_id,
            orders.c.status.in_((OrderStatus.PENDING, OrderStatus.CONFIRMED))))).scalar_one())


async def _state_from_orders(conn: AsyncConnection, deal: Any, epoch: int) -> RebuiltState:
    rows = (await conn.execute(select(
        orders.c.id, orders.c.user_id, orders.c.quantity, orders.c.status,
        orders.c.idempotency_key, orders.c.created_at).where(
        orders.c.hot_deal_id == deal.id,
        orders.c.status.in_((OrderStatus.PENDING, OrderStatus.CONFIRMED))))).all()
    price = (await conn.execute(select(products.c.price).where(
        products.c.id == deal.product_id))).scalar_one()
    users: dict[str, int] = {}
    reservations: list[Reservation] = []
    idem: dict[tuple[str, str], UUID] = {}
    for r in rows:
        users[r.user_id] = users.get(r.user_id, 0) + r.quantity
        if r.idempotency_key:
            idem[(r.user_id, r.idempotency_key)] = r.id
        if r.status == OrderStatus.PENDING:
            ms = int(r.created_at.timestamp() * 1000)
            reservations.append(Reservation(r.id, r.user_id, r.quantity, ms,
                                            r.idempotency_key or ""))
    stock = int(deal.initial_stock) - sum(users.values())
    return RebuiltState(deal.id, stock, int(deal.per_user_limit), epoch, int(price), users,
                        reservations, idem)


async def recover_lost_states(ctx: Context) -> list[RecoverReport]:
    """Find ACTIVE Redis deals whose Redis state lost writes (Redis restarted empty, a
    failover to a replica that had not received them: see `_lost_writes`) and rebuild
    them. The check without the fence is cheap (one peek, one sum on the deal's index);
    only a deal it flags is looked at again, under the fence, before it is rebuilt."""
    async with ctx.engine.connect() as conn:
        live = (await conn.execute(select(hot_deals).where(
            hot_deals.c.status == DealStatus.ACTIVE,
            hot_deals.c.stock_backend == StockBackend.REDIS))).all()
    reports = []
    for deal in live:
        snap = await ctx.stock.peek(deal.product_id)  # Redis first: see `_lost_writes`
        if _lost_writes(deal, snap, None) is None:
            async with ctx.engine.connect() as conn:
                sold = await _sold_units(conn, deal.id)
            if _lost_writes(deal, snap, sold) is None:
                continue
        try:
            report = await _rebuild(ctx, int(deal.product_id), only_if_lost=True)
        except Conflict as exc:  # ended meanwhile, or rebuilt by someone else
            log.info("recovery of deal %s skipped: %s", deal.id, exc.message)
            continue
        if report is not None:
            reports.append(report)
    return reports
