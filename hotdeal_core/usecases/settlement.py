"""Settling orders (the stock worker is the only writer of order status after creation).

Every change is a compare-and-set on the current status, in one transaction with its
outbox event and, when an event triggered it, a `processed_events` row (idempotent
consumers). Stock goes back exactly once:
- to Postgres in the same transaction (ordinary product, a db-backed deal, or any deal
  already reconciled), or
- to Redis right after the commit, by the release script whose reservation record is the
  token (a redelivered event releases again harmlessly). If the deal is closed or its Redis
  state is being rebuilt, the release is deferred: the flush or the rebuild count the units
  from Postgres, where the order is already CANCELLED.
The deal fence is taken shared, so a cancel never interleaves with a flush.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Literal
from uuid import UUID

from sqlalchemy import select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from hotdeal_core.db.fence import share_deal
from hotdeal_core.db.tables import hot_deals, orders, processed_events
from hotdeal_core.domain import CancelReason, DealStatus, OrderStatus, StockBackend
from hotdeal_core.outbox import add_event
from hotdeal_core.stock.port import ReleaseOutcome
from hotdeal_core.usecases.context import Context
from schemas.events import OrderCancelled, OrderConfirmed, RefundRequested

log = logging.getLogger(__name__)

Outcome = Literal["applied", "already_processed", "not_found", "no_change"]


@dataclass(frozen=True, slots=True)
class SettleResult:
    outcome: Outcome
    status: str | None = None


async def _first_time(conn: AsyncConnection, consumer: str, event_id: UUID | None) -> bool:
    if event_id is None:
        return True
    row = (await conn.execute(
        insert(processed_events).values(consumer=consumer, event_id=event_id)
        .on_conflict_do_nothing().returning(processed_events.c.event_id))).first()
    return row is not None


async def _deal_of(conn: AsyncConnection, order_id: UUID) -> tuple[int | None, object]:
    """The order's deal row, read under the shared deal fence (the flush owns it)."""
    deal_id = (await conn.execute(
        select(orders.c.hot_deal_id).where(orders.c.id == order_id))).scalar_one_or_none()
    if deal_id is None:
        return None, None
    await share_deal(conn, int(deal_id))
    deal = (await conn.execute(
        select(hot_deals.c.status, hot_deals.c.stock_backend)
        .where(hot_deals.c.id == deal_id))).one()
    return int(deal_id), deal


async def confirm_order(ctx: Context, order_id: UUID, *, payment_id: str | None,
                        amount: int | None = None, event_id: UUID | None = None,
                        consumer: str = "stock-worker") -> SettleResult:
    async with ctx.engine.begin() as conn:
        if not await _first_time(conn, consumer, event_id):
            return SettleResult("already_processed")
        row = (await conn.execute(
            orders.update().where(orders.c.id == order_id,
                                  orders.c.status == OrderStatus.PENDING)
            .values(status=OrderStatus.CONFIRMED, payment_id=payment_id,
                    updated_at=text("now()"))
            .returning(orders))).first()
        if row is not None:
            await add_event(conn, ctx.topics, OrderConfirmed(
                order_id=order_id, product_id=row.product_id, hot_deal_id=row.hot_deal_id,
                user_id=row.user_id, quantity=row.quantity, payment_id=payment_id))
        else:
            current = (await conn.execute(select(orders.c.status, orders.c.payment_id).where(
                orders.c.id == order_id))).first()
            if current is None:
                return SettleResult("not_found")
            refund = payment_id is not None and await _refund_reason(
                conn, order_id, current.status, current.payment_id, payment_id)
            if refund:
                # Never lose the money: a payment that cannot settle the order goes back.
                assert payment_id is not None
                await add_event(conn, ctx.topics, RefundRequested(
                    order_id=order_id, payment_id=payment_id, amount=amount or 0,
                    reason=refund))
            result = SettleResult("no_change", current.status)
    ctx.outbox_written()
    if row is None:
        return result
    if row.hot_deal_id is not None:
        try:  # the units stay sold; only the reservation record goes
            await ctx.stock.forget(row.product_id, order_id)
        except Exception:  # noqa: BLE001 - harmless if left: the flush drops it
            log.warning("could not drop the reservation record of %s", order_id)
    return SettleResult("applied", OrderStatus.CONFIRMED)


async def _refund_reason(conn: AsyncConnection, order_id: UUID, status: str,
                         confirmed_by: str | None, payment_id: str) -> str | None:
    """Why a successful payment of an order that is no longer PENDING is refunded, if it is."""
    if status == OrderStatus.CANCELLED:
        return "order_cancelled"  # paid too late (the reservation expired) or cancelled
    if confirmed_by is None:
        # Confirmed without a payment (admin): the first payment is the order's, keep it.
        claimed = (await conn.execute(orders.update().where(
            orders.c.id == order_id, orders.c.payment_id.is_(None)).values(
            payment_id=payment_id, updated_at=text("now()")).returning(orders.c.id))).first()
        if claimed is not None:
            return None
        confirmed_by = (await conn.execute(select(orders.c.payment_id).where(
            orders.c.id == order_id))).scalar_one()
    return None if confirmed_by == payment_id else "duplicate_payment"


async def cancel_order(ctx: Context, order_id: UUID, reason: CancelReason, *,
                       event_id: UUID | None = None,
                       consumer: str = "stock-worker") -> SettleResult:
    redis_release = False
    async with ctx.engine.begin() as conn:
        if not await _first_time(conn, consumer, event_id):
            result = SettleResult("already_processed")
        else:
            deal_id, deal = await _deal_of(conn, order_id)
            cas = [orders.c.id == order_id, orders.c.status == OrderStatus.PENDING]
            if reason is CancelReason.EXPIRED:
                # An order paid in time is never expired. The webhook marks paid_at under
                # the order's row lock, so this compare-and-set waits for it and sees it.
                cas.append(orders.c.paid_at.is_(None))
            row = (await conn.execute(
                orders.update().where(*cas)
                .values(status=OrderStatus.CANCELLED, cancel_reason=reason,
                        updated_at=text("now()"))
                .returning(orders))).first()
            if row is None:
                current = (await conn.execute(select(orders.c.status).where(
                    orders.c.id == order_id))).scalar_one_or_none()
                result = SettleResult("not_found" if current is None else "no_change", current)
            else:
                released_to = await _give_back_in_postgres(conn, row, deal_id, deal)
                redis_release = released_to == "redis"
                await add_event(conn, ctx.topics, OrderCancelled(
                    order_id=order_id, product_id=row.product_id, hot_deal_id=deal_id,
                    user_id=row.user_id, quantity=row.quantity, reason=reason,
                    stock_released_to=released_to))
                result = SettleResult("applied", OrderStatus.CANCELLED)
        product_id = (await conn.execute(select(orders.c.product_id, orders.c.status).where(
            orders.c.id == order_id))).first()
    if result.outcome == "applied":
        ctx.outbox_written()
    # Also on a redelivery: the worker may have died between the commit and the release.
    if product_id is not None and product_id.status == OrderStatus.CANCELLED and (
            redis_release or result.outcome == "already_processed"):
        outcome = await ctx.stock.release(product_id.product_id, order_id)
        if outcome is ReleaseOutcome.NOT_OPEN:
            log.info("release of %s deferred: the deal's Redis state is closed or gone",
                     order_id)
    return result


async def _give_back_in_postgres(conn: AsyncConnection, row: object, deal_id: int | None,
                                 deal: object) -> Literal["redis", "db", "deferred"]:
    qty, product_id = row.quantity, row.product_id  # type: ignore[attr-defined]
    if deal_id is None:
        await conn.execute(text("UPDATE products SET stock = stock + :q, updated_at = now() "
                                "WHERE id = :pid"), {"q": qty, "pid": product_id})
        return "db"
    status, backend = deal.status, deal.stock_backend  # type: ignore[attr-defined]
    if status == DealStatus.RECONCILED:
        await conn.execute(text("UPDATE products SET stock = stock + :q, updated_at = now() "
                                "WHERE id = :pid"), {"q": qty, "pid": product_id})
        await conn.execute(text("UPDATE hot_deals SET returned_stock = returned_stock + :q, "
                                "updated_at = now() WHERE id = :d"), {"q": qty, "d": deal_id})
        return "db"
    if backend == StockBackend.DB:
        await conn.execute(text("UPDATE hot_deals SET remaining_stock = remaining_stock + :q, "
                                "updated_at = now() WHERE id = :d"), {"q": qty, "d": deal_id})
        return "db"
    return "redis" if status == DealStatus.ACTIVE else "deferred"


async def expire_due_orders(ctx: Context, batch_size: int) -> int:
    """Cancel PENDING orders past their reservation TTL that were not paid in time; returns
    how many were cancelled."""
    async with ctx.engine.connect() as conn:
        due = (await conn.execute(text(
            "SELECT id FROM orders WHERE status = 'PENDING' AND expires_at < now() "
            "AND paid_at IS NULL ORDER BY expires_at LIMIT :n"), {"n": batch_size})
        ).scalars().all()
    cancelled = 0
    for order_id in due:
        result = await cancel_order(ctx, order_id, CancelReason.EXPIRED)
        cancelled += result.outcome == "applied"
    return cancelled
