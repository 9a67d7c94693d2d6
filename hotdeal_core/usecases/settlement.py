"""Settling orders (the stock worker is the only writer of order status after creation).

`settle_batch` applies many confirmations and cancellations in ONE transaction (a Kafka
batch, or the sweeper's due orders); `confirm_order` and `cancel_order` are batches of one.
The commands of one order apply in the order given (the consumer passes offset order),
each seeing the previous one's effect, as separate transactions in a row would.

The order rows are locked in id order, then every change is a compare-and-set on the state
read, in the transaction that writes its outbox events and, for an event, its
`processed_events` row (an event id twice in one batch counts once). Stock goes back
exactly once: to Postgres in the same transaction (ordinary product, db-backed deal, deal
already reconciled), or to Redis after the commit by the release script, whose reservation
record is the token (a redelivered event releases again harmlessly); if the deal's Redis
state is closed or being rebuilt, the release is deferred to the flush or the rebuild,
which count from Postgres. The deal fence is shared, once per deal with a cancellation in
the batch, in deal id order, so a cancel never interleaves with a flush (confirmations
leave the units sold: no fence).
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal
from uuid import UUID

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from hotdeal_core.db.fence import share_deal
from hotdeal_core.domain import CancelReason, DealStatus, OrderStatus, StockBackend
from hotdeal_core.messaging.topics import event_key
from hotdeal_core.stock.port import ReleaseOutcome
from hotdeal_core.usecases.books import give_back_to_product
from hotdeal_core.usecases.context import Context
from schemas.events import AnyEvent, OrderCancelled, OrderConfirmed, RefundRequested

log = logging.getLogger(__name__)

Outcome = Literal["applied", "already_processed", "not_found", "no_change"]
GROUP = "stock-worker"


@dataclass(frozen=True, slots=True)
class SettleResult:
    outcome: Outcome
    status: str | None = None


@dataclass(frozen=True, slots=True)
class Confirm:
    """Confirm a PENDING order: a successful payment (`payment_id`) or an admin (None)."""

    order_id: UUID
    payment_id: str | None = None
    amount: int | None = None
    event_id: UUID | None = None


@dataclass(frozen=True, slots=True)
class Cancel:
    order_id: UUID
    reason: CancelReason
    event_id: UUID | None = None


Command = Confirm | Cancel


@dataclass(slots=True)
class _Order:
    """An order row as locked, and what the batch makes of it."""

    id: UUID
    product_id: int
    deal_id: int | None
    user_id: str
    quantity: int
    status: str
    payment_id: str | None
    paid: bool
    was: tuple[str, str | None] = ("", None)  # (status, payment_id) as read: the CAS
    cancel_reason: str | None = None


@dataclass
class _Plan:
    """Everything one batch writes, gathered before the statements that write it."""

    results: list[SettleResult] = field(default_factory=list)
    events: list[AnyEvent] = field(default_factory=list)
    product_units: Counter[int] = field(default_factory=Counter)  # back to products.stock
    returned_units: Counter[int] = field(default_factory=Counter)  # deal: returned_stock
    remaining_units: Counter[int] = field(default_factory=Counter)  # db deal: remaining
    release: dict[UUID, int] = field(default_factory=dict)  # order -> product, after commit
    forget: dict[UUID, int] = field(default_factory=dict)


_FIRST_TIME = text("""
    INSERT INTO processed_events (consumer, event_id)
    SELECT CAST(:consumer AS text), e FROM unnest(CAST(:ids AS uuid[])) AS e
    ON CONFLICT DO NOTHING RETURNING event_id
""")
_DEALS_OF = text("""
    SELECT DISTINCT hot_deal_id FROM orders
    WHERE id = ANY(CAST(:ids AS uuid[])) AND hot_deal_id IS NOT NULL
""")
_DEALS = text("SELECT id, status, stock_backend FROM hot_deals "
              "WHERE id = ANY(CAST(:ids AS bigint[]))")
_LOCK = text("""
    SELECT id, product_id, hot_deal_id, user_id, quantity, status, payment_id,
           paid_at IS NOT NULL AS paid
    FROM orders WHERE id = ANY(CAST(:ids AS uuid[])) ORDER BY id FOR UPDATE
""")
# The compare-and-set: each row moves only from the (status, payment_id) it was read with,
# and an expiry never cancels an order paid in time.
_UPDATE = text("""
    UPDATE orders AS o SET status = u.status, payment_id = u.payment_id,
        cancel_reason = u.cancel_reason, updated_at = now()
    FROM unnest(CAST(:ids AS uuid[]), CAST(:was_status AS text[]),
                CAST(:was_payment AS text[]), CAST(:status AS text[]),
                CAST(:payment AS text[]), CAST(:reason AS text[]))
        AS u(id, was_status, was_payment, status, payment_id, cancel_reason)
    WHERE o.id = u.id AND o.status = u.was_status
      AND o.payment_id IS NOT DISTINCT FROM u.was_payment
      AND (u.cancel_reason IS DISTINCT FROM 'expired' OR o.paid_at IS NULL)
    RETURNING o.id
""")
_OUTBOX = text("""
    INSERT INTO outbox (topic, key, event_type, payload)
    SELECT * FROM unnest(CAST(:topics AS text[]), CAST(:keys AS text[]),
                         CAST(:types AS text[]), CAST(:payloads AS jsonb[]))
""")


async def settle_batch(ctx: Context, commands: Sequence[Command], *,
                       consumer: str = GROUP) -> list[SettleResult]:
    """Apply `commands` in one transaction; one result per command, in order."""
    if not commands:
        return []
    plan = _Plan()
    async with ctx.engine.begin() as conn:
        fresh = await _first_times(conn, consumer, commands)
        cancels = sorted({c.order_id for c, new in zip(commands, fresh, strict=True)
                          if new and isinstance(c, Cancel)})
        deals = await _fence(conn, cancels)
        rows = (await conn.execute(_LOCK, {"ids": sorted({c.order_id for c in commands})})
                ).all()
        found = {r.id: _Order(r.id, r.product_id, r.hot_deal_id, r.user_id, r.quantity,
                              r.status, r.payment_id, r.paid, (r.status, r.payment_id))
                 for r in rows}
        for command, new in zip(commands, fresh, strict=True):
            order = found.get(command.order_id)
            if new:
                plan.results.append(_apply(plan, command, order, deals))
                continue
            plan.results.append(SettleResult("already_processed"))
            # Released again: the worker may have died between the commit and the release.
            if isinstance(command, Cancel) and order is not None and order.deal_id \
                    is not None and order.status == OrderStatus.CANCELLED:
                plan.release.setdefault(order.id, order.product_id)
        await _write(conn, ctx, plan, found)
    if plan.events:
        ctx.outbox_written()
    await _after_commit(ctx, plan)
    return plan.results


async def _first_times(conn: AsyncConnection, consumer: str,
                       commands: Sequence[Command]) -> list[bool]:
    """Whether each command is seen for the first time (by event id; none: always)."""
    ids = sorted({c.event_id for c in commands if c.event_id is not None})
    new: set[UUID] = set()
    if ids:  # sorted: two batches sharing events lock their keys in the same order
        new = set((await conn.execute(_FIRST_TIME, {"consumer": consumer, "ids": ids}))
                  .scalars())
    fresh = []
    for c in commands:
        if c.event_id is None:
            fresh.append(True)
        else:
            fresh.append(c.event_id in new)
            new.discard(c.event_id)  # a second copy in the same batch is a duplicate
    return fresh


async def _fence(conn: AsyncConnection, order_ids: list[UUID]) -> dict[int, Any]:
    """Share the fence of every deal of these orders (in id order: no deadlock with a
    flush waiting for one of them), then read those deals."""
    if not order_ids:
        return {}
    deal_ids = sorted(int(d) for d in (await conn.execute(_DEALS_OF, {"ids": order_ids}))
                      .scalars())
    for deal_id in deal_ids:
        await share_deal(conn, deal_id)
    rows = (await conn.execute(_DEALS, {"ids": deal_ids})).all() if deal_ids else []
    return {int(r.id): r for r in rows}


def _apply(plan: _Plan, command: Command, order: _Order | None,
           deals: dict[int, Any]) -> SettleResult:
    if order is None:
        return SettleResult("not_found")
    if isinstance(command, Confirm):
        return _confirm(plan, command, order)
    if order.status != OrderStatus.PENDING or (
            command.reason is CancelReason.EXPIRED and order.paid):
        # An order paid in time is never expired: the webhook marks paid_at under the row
        # lock this batch holds, so what was read is what is committed.
        return SettleResult("no_change", order.status)
    order.status, order.cancel_reason = OrderStatus.CANCELLED, command.reason
    released_to = _give_back(plan, order, deals)
    if released_to == "redis":
        plan.release[order.id] = order.product_id
    plan.events.append(OrderCancelled(
        order_id=order.id, product_id=order.product_id, hot_deal_id=order.deal_id,
        user_id=order.user_id, quantity=order.quantity, reason=command.reason,
        stock_released_to=released_to))
    return SettleResult("applied", OrderStatus.CANCELLED)


def _confirm(plan: _Plan, command: Confirm, order: _Order) -> SettleResult:
    if order.status == OrderStatus.PENDING:
        order.status, order.payment_id = OrderStatus.CONFIRMED, command.payment_id
        if order.deal_id is not None:  # the units stay sold; only the reservation record goes
            plan.forget[order.id] = order.product_id
        plan.events.append(OrderConfirmed(
            order_id=order.id, product_id=order.product_id, hot_deal_id=order.deal_id,
            user_id=order.user_id, quantity=order.quantity, payment_id=command.payment_id))
        return SettleResult("applied", OrderStatus.CONFIRMED)
    if command.payment_id is not None and (refund := _refund_reason(order, command.payment_id)):
        # Never lose the money: a payment that cannot settle the order goes back.
        plan.events.append(RefundRequested(order_id=order.id, payment_id=command.payment_id,
                                           amount=command.amount or 0, reason=refund))
    return SettleResult("no_change", order.status)


def _refund_reason(order: _Order, payment_id: str) -> str | None:
    """Why a successful payment of an order that is no longer PENDING is refunded, if it is."""
    if order.status == OrderStatus.CANCELLED:
        return "order_cancelled"  # paid too late (the reservation expired) or cancelled
    if order.payment_id is None:
        # Confirmed without a payment (admin): the first payment is the order's, keep it.
        order.payment_id = payment_id
        return None
    return None if order.payment_id == payment_id else "duplicate_payment"


def _give_back(plan: _Plan, order: _Order, deals: dict[int, Any]
               ) -> Literal["redis", "db", "deferred"]:
    if order.deal_id is None:
        plan.product_units[order.product_id] += order.quantity
        return "db"
    deal = deals[order.deal_id]
    if deal.status == DealStatus.RECONCILED:
        plan.product_units[order.product_id] += order.quantity
        plan.returned_units[order.deal_id] += order.quantity
        return "db"
    if deal.stock_backend == StockBackend.DB:
        plan.remaining_units[order.deal_id] += order.quantity
        return "db"
    return "redis" if deal.status == DealStatus.ACTIVE else "deferred"


async def _write(conn: AsyncConnection, ctx: Context, plan: _Plan,
                 found: dict[UUID, _Order]) -> None:
    changed = [o for o in found.values() if (o.status, o.payment_id) != o.was]
    if changed:
        updated = (await conn.execute(_UPDATE, {
            "ids": [o.id for o in changed], "was_status": [o.was[0] for o in changed],
            "was_payment": [o.was[1] for o in changed],
            "status": [o.status for o in changed],
            "payment": [o.payment_id for o in changed],
            "reason": [o.cancel_reason for o in changed]})).all()
        if len(updated) != len(changed):  # the rows are locked: this would be a bug
            raise RuntimeError(f"compare-and-set moved {len(updated)} of {len(changed)} "
                               "orders")
    # One row at a time, in id order: hot rows are locked in the same order by every batch.
    for pid, units in sorted(plan.product_units.items()):
        await give_back_to_product(conn, pid, units)
    for deal_id in sorted(plan.returned_units.keys() | plan.remaining_units.keys()):
        await conn.execute(text(
            "UPDATE hot_deals SET returned_stock = returned_stock + :r, "
            "remaining_stock = remaining_stock + :m, updated_at = now() WHERE id = :d"),
            {"r": plan.returned_units[deal_id], "m": plan.remaining_units[deal_id],
             "d": deal_id})
    if plan.events:
        events = plan.events
        await conn.execute(_OUTBOX, {
            "topics": [ctx.topics.of(e) for e in events],
            "keys": [event_key(e) for e in events], "types": [e.type for e in events],
            "payloads": [json.dumps(e.model_dump(mode="json")) for e in events]})


async def _after_commit(ctx: Context, plan: _Plan) -> None:
    if plan.forget:
        try:
            await ctx.stock.forget_many([(p, o) for o, p in plan.forget.items()])
        except Exception:  # noqa: BLE001 - harmless if left: the flush drops them
            log.warning("could not drop the reservation records of %d confirmed orders",
                        len(plan.forget))
    if plan.release:
        outcomes = await ctx.stock.release_many([(p, o) for o, p in plan.release.items()])
        deferred = outcomes.count(ReleaseOutcome.NOT_OPEN)
        if deferred:
            log.info("release of %d orders deferred: the deal's Redis state is closed or "
                     "gone", deferred)


async def confirm_order(ctx: Context, order_id: UUID, *, payment_id: str | None,
                        amount: int | None = None, event_id: UUID | None = None,
                        consumer: str = GROUP) -> SettleResult:
    command = Confirm(order_id, payment_id, amount, event_id)
    return (await settle_batch(ctx, [command], consumer=consumer))[0]


async def cancel_order(ctx: Context, order_id: UUID, reason: CancelReason, *,
                       event_id: UUID | None = None, consumer: str = GROUP) -> SettleResult:
    command = Cancel(order_id, reason, event_id)
    return (await settle_batch(ctx, [command], consumer=consumer))[0]


async def expire_due_orders(ctx: Context, batch_size: int) -> int:
    """Cancel PENDING orders past their reservation TTL that were not paid in time, in one
    transaction (their releases in one round trip); returns how many were cancelled."""
    async with ctx.engine.connect() as conn:
        due = (await conn.execute(text(
            "SELECT id FROM orders WHERE status = 'PENDING' AND expires_at < now() "
            "AND paid_at IS NULL ORDER BY expires_at LIMIT :n"), {"n": batch_size})
        ).scalars().all()
    results = await settle_batch(ctx, [Cancel(order_id, CancelReason.EXPIRED)
                                       for order_id in due])
    return sum(r.outcome == "applied" for r in results)
