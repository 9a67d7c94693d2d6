"""The deal's books: flush at the end, audit at any time, recover from Redis loss, release
orphan reservations.

The invariant, for every deal at every moment:
    initial = on sale + pending + confirmed + in flight
where "on sale" is the Redis (or db hot-row) stock before the flush and the units given
back to Postgres after it, and "in flight" are reservations whose order row is not written
(or whose cancellation has not reached Redis yet).

Locks: the flush and the rebuild own the deal fence (`hotdeal_core.db.fence`, exclusive)
and lock the deal row `FOR UPDATE`; order inserts and cancellations share the fence. So
while a flush or a rebuild reads the orders, no order of the deal can appear or change
status, which is what makes both exact. They hold it across one Redis call on purpose (an
operator action, not the hot path).
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from sqlalchemy import ARRAY, any_, bindparam, func, select, text
from sqlalchemy.dialects.postgresql import UUID as PG_UUID
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.elements import BindParameter

from hotdeal_core.db.fence import own_deal
from hotdeal_core.db.tables import hot_deals, orders, products, reconciliations
from hotdeal_core.domain import (
    LIVE_DEAL_STATUSES,
    CancelReason,
    DealStatus,
    OrderStatus,
    StockBackend,
)
from hotdeal_core.errors import Conflict, NotFound
from hotdeal_core.messaging.outbox import add_event
from hotdeal_core.stock.port import DealSnapshot, RebuiltState, ReleaseOutcome, Reservation
from hotdeal_core.usecases.context import Context
from hotdeal_core.usecases.deals import end_deal
from schemas.events import HotDealReconciled

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Audit:
    deal_id: int
    product_id: int
    status: str
    stock_backend: str
    initial: int
    on_sale: int
    pending: int
    confirmed: int
    in_flight: int
    cancelled: int

    @property
    def balanced(self) -> bool:
        return self.initial == self.on_sale + self.pending + self.confirmed + self.in_flight

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "balanced": self.balanced}


async def _deal(conn: AsyncConnection, deal_id: int, *, lock: bool = False) -> Any:
    query = select(hot_deals).where(hot_deals.c.id == deal_id)
    if lock:  # the fence stops order writes; the row lock, the db design's hot-row updates
        await own_deal(conn, deal_id)
        query = query.with_for_update()
    row = (await conn.execute(query)).first()
    if row is None:
        raise NotFound("deal_not_found", f"deal {deal_id} does not exist")
    return row


async def _units_by_status(conn: AsyncConnection, deal_id: int) -> dict[str, int]:
    rows = (await conn.execute(
        select(orders.c.status, func.coalesce(func.sum(orders.c.quantity), 0))
        .where(orders.c.hot_deal_id == deal_id).group_by(orders.c.status))).all()
    units = {s.value: 0 for s in OrderStatus}
    units.update({status: int(n) for status, n in rows})
    return units


async def latest_deal_id(ctx: Context, product_id: int) -> int:
    async with ctx.engine.connect() as conn:
        deal_id = (await conn.execute(
            select(hot_deals.c.id).where(hot_deals.c.product_id == product_id)
            .order_by(hot_deals.c.id.desc()).limit(1))).scalar_one_or_none()
    if deal_id is None:
        raise NotFound("deal_not_found", f"product {product_id} has never had a deal")
    return int(deal_id)


async def audit_deal(ctx: Context, deal_id: int, attempts: int = 3) -> Audit:
    """Exact once the deal is quiet or reconciled; under live traffic the Redis and Postgres
    reads are not one snapshot, so a mismatch is retried a few times before it is reported."""
    audit = await _audit_once(ctx, deal_id)
    for _ in range(attempts - 1):
        if audit.balanced:
            break
        audit = await _audit_once(ctx, deal_id)
    return audit


async def _audit_once(ctx: Context, deal_id: int) -> Audit:
    async with ctx.engine.connect() as conn:
        deal = await _deal(conn, deal_id)
        units = await _units_by_status(conn, deal_id)
        on_sale, in_flight = int(deal.returned_stock), 0
        if deal.status != DealStatus.RECONCILED:
            if deal.stock_backend == StockBackend.DB:
                on_sale += int(deal.remaining_stock)
            else:
                snap = await ctx.stock.snapshot(deal.product_id)
                if snap.deal_id == deal_id:
                    on_sale += snap.stock
                    statuses = await _statuses(conn, [r.order_id for r in snap.reservations])
                    in_flight = sum(r.quantity for r in snap.reservations
                                    if statuses.get(r.order_id) in (None, OrderStatus.CANCELLED))
    return Audit(deal_id, int(deal.product_id), str(deal.status), str(deal.stock_backend),
                 int(deal.initial_stock), on_sale, units[OrderStatus.PENDING],
                 units[OrderStatus.CONFIRMED], in_flight, units[OrderStatus.CANCELLED])


async def _statuses(conn: AsyncConnection, order_ids: list[UUID]) -> dict[UUID, str]:
    if not order_ids:
        return {}
    # One array parameter, not one parameter per id: a deal may hold more live
    # reservations than a statement may have parameters (32,767).
    rows = (await conn.execute(select(orders.c.id, orders.c.status).where(
        orders.c.id == any_(_ids(order_ids))))).all()
    return {row.id: row.status for row in rows}


_UUID_ARRAY: ARRAY[Any] = ARRAY(PG_UUID(as_uuid=True))


def _ids(items: list[UUID] | list[Reservation]) -> BindParameter[Any]:
    """Order ids as one uuid[] parameter."""
    ids = [i if isinstance(i, UUID) else i.order_id for i in items]
    return bindparam("ids", ids, type_=_UUID_ARRAY)


async def audit_live_deals(ctx: Context) -> list[Audit]:
    async with ctx.engine.connect() as conn:
        live = (await conn.execute(select(hot_deals.c.id).where(
            hot_deals.c.status.in_(LIVE_DEAL_STATUSES)))).scalars().all()
    return [await audit_deal(ctx, int(deal_id), attempts=1) for deal_id in live]


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
        deal = await _deal(conn, deal_id)
    product_id = int(deal.product_id)
    if deal.status == DealStatus.ACTIVE:
        await end_deal(ctx, product_id)
    elif deal.stock_backend == StockBackend.REDIS and deal.status == DealStatus.ENDED:
        await ctx.stock.close(product_id, deal_id)
    async with ctx.engine.begin() as conn:
        deal = await _deal(conn, deal_id, lock=True)
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
    units = await _units_by_status(conn, deal.id)
    pending, confirmed = units[OrderStatus.PENDING], units[OrderStatus.CONFIRMED]
    # The orders are the truth of what was sold; everything else goes back.
    returned = int(deal.initial_stock) - pending - confirmed
    redis_stock, orphans, cancelled_held = int(deal.remaining_stock), 0, 0
    if deal.stock_backend == StockBackend.REDIS:
        snap = await ctx.stock.snapshot(deal.product_id)
        redis_stock = snap.stock if snap.deal_id == deal.id else 0
        statuses = await _statuses(conn, [r.order_id for r in snap.reservations])
        orphans = sum(r.quantity for r in snap.reservations if r.order_id not in statuses)
        cancelled_held = sum(r.quantity for r in snap.reservations
                             if statuses.get(r.order_id) == OrderStatus.CANCELLED)
        state_found = snap.deal_id == deal.id
    else:
        state_found = True
    # Cross-check: what the stock store still holds must be exactly what goes back.
    balanced = state_found and redis_stock + orphans + cancelled_held == returned
    await conn.execute(text("UPDATE products SET stock = stock + :n, updated_at = now() "
                            "WHERE id = :pid"), {"n": returned, "pid": deal.product_id})
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
    async with ctx.engine.begin() as conn:
        deal_id = (await conn.execute(select(hot_deals.c.id).where(
            hot_deals.c.product_id == product_id,
            hot_deals.c.status == DealStatus.ACTIVE))).scalar_one_or_none()
        if deal_id is None:
            raise Conflict("deal_not_active", f"product {product_id} has no active deal")
        deal = await _deal(conn, int(deal_id), lock=True)
        if deal.stock_backend != StockBackend.REDIS:
            raise Conflict("invalid_state", "this deal keeps its stock in Postgres")
        reason = "asked for"
        if only_if_lost:
            units = await _units_by_status(conn, deal.id)
            lost = _lost_writes(deal, await ctx.stock.peek(product_id),
                                units[OrderStatus.PENDING] + units[OrderStatus.CONFIRMED])
            if lost is None:
                return None
            reason = lost
        epoch = int(deal.epoch) + 1
        await conn.execute(hot_deals.update().where(hot_deals.c.id == deal.id).values(
            epoch=epoch, updated_at=text("now()")))
        state = await _state_from_orders(conn, deal, epoch)
        if not await ctx.stock.rebuild(product_id, state):
            raise Conflict("invalid_state", "a newer rebuild of this deal is already in Redis")
    log.warning("deal %s: Redis state rebuilt from Postgres (epoch %d, stock %d): %s",
                deal.id, epoch, state.stock, reason)
    return RecoverReport(deal.id, product_id, epoch, state.stock, len(state.reservations),
                         reason)


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
    `sold` None: not read yet (status and epoch only).
    """
    if snap.status is None or snap.deal_id != deal.id:
        return "no Redis state for this deal"
    if snap.epoch < deal.epoch:
        return f"Redis state of epoch {snap.epoch}, the deal is at {deal.epoch}"
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
    now_ms = int(time.time() * 1000)
    cutoff_ms = now_ms - int(grace_seconds * 1000)
    released = examined = 0
    more = False
    for deal_id, product_id in live:
        due = await ctx.stock.due(product_id, cutoff_ms, batch)
        if due.deal_id != deal_id or not due.reservations:
            continue
        examined += len(due.reservations)
        more = more or len(due.reservations) == batch
        async with ctx.engine.connect() as conn:
            rows = (await conn.execute(select(orders.c.id, orders.c.status, orders.c.expires_at)
                                       .where(orders.c.id == any_(_ids(due.reservations))))
                    ).all()
        known = {row.id: row for row in rows}
        later: dict[UUID, int] = {}
        for r in due.reservations:
            row = known.get(r.order_id)
            if row is None and not await _void(ctx, deal_id, product_id, r):
                continue  # the order row appeared after all: not an orphan
            if row is not None and row.status == OrderStatus.PENDING:
                later[r.order_id] = max(now_ms, int(row.expires_at.timestamp() * 1000))
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
            cancel_reason=CancelReason.ORPHANED, expires_at=datetime.now(UTC))
            .on_conflict_do_nothing(index_elements=["id"]).returning(orders.c.id))).first()
    return inserted is not None


async def end_due_deals(ctx: Context) -> list[int]:
    """End ACTIVE deals whose duration is over (their HotDealEnded triggers the flush)."""
    async with ctx.engine.connect() as conn:
        due = (await conn.execute(select(hot_deals.c.product_id).where(
            hot_deals.c.status == DealStatus.ACTIVE,
            hot_deals.c.ends_at < func.now()))).scalars().all()
    ended = []
    for product_id in due:
        deal_id, now = await end_deal(ctx, int(product_id), reason="duration_over")
        if now:
            ended.append(deal_id)
    return ended
