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

This module reads and writes; what each command makes of its order is decided in memory by
`hotdeal_core.usecases.settlement_plan`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from uuid import UUID

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from hotdeal_core.db.fence import share_deal
from hotdeal_core.domain import CancelReason, OrderStatus
from hotdeal_core.messaging.topics import event_key
from hotdeal_core.stock.port import ReleaseOutcome
from hotdeal_core.usecases.books import give_back_to_product
from hotdeal_core.usecases.context import Context
from hotdeal_core.usecases.settlement_plan import (
    Cancel,
    Command,
    Confirm,
    DealState,
    LockedOrder,
    Plan,
    SettleResult,
    apply_command,
)

log = logging.getLogger(__name__)

GROUP = "stock-worker"

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
# The compare-and-set: each row moves only from the (status, payment_id) it was read with
# (paid_at is read under the same row lock: see settlement_plan and domain.can_transition).
_UPDATE = text("""
    UPDATE orders AS o SET status = u.status, payment_id = u.payment_id,
        cancel_reason = u.cancel_reason, updated_at = now()
    FROM unnest(CAST(:ids AS uuid[]), CAST(:was_status AS text[]),
                CAST(:was_payment AS text[]), CAST(:status AS text[]),
                CAST(:payment AS text[]), CAST(:reason AS text[]))
        AS u(id, was_status, was_payment, status, payment_id, cancel_reason)
    WHERE o.id = u.id AND o.status = u.was_status
      AND o.payment_id IS NOT DISTINCT FROM u.was_payment
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
    plan = Plan()
    async with ctx.engine.begin() as conn:
        fresh = await _first_times(conn, consumer, commands)
        cancels = sorted({c.order_id for c, new in zip(commands, fresh, strict=True)
                          if new and isinstance(c, Cancel)})
        deals = await _fence(conn, cancels)
        rows = (await conn.execute(_LOCK, {"ids": sorted({c.order_id for c in commands})})
                ).all()
        found = {r.id: LockedOrder(r.id, r.product_id, r.hot_deal_id, r.user_id, r.quantity,
                              r.status, r.payment_id, r.paid, (r.status, r.payment_id))
                 for r in rows}
        for command, new in zip(commands, fresh, strict=True):
            order = found.get(command.order_id)
            if new:
                plan.results.append(apply_command(plan, command, order, deals))
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


async def _fence(conn: AsyncConnection, order_ids: list[UUID]) -> dict[int, DealState]:
    """Share the fence of every deal of these orders (in id order: no deadlock with a
    flush waiting for one of them), then read those deals."""
    if not order_ids:
        return {}
    deal_ids = sorted(int(d) for d in (await conn.execute(_DEALS_OF, {"ids": order_ids}))
                      .scalars())
    for deal_id in deal_ids:
        await share_deal(conn, deal_id)
    rows = (await conn.execute(_DEALS, {"ids": deal_ids})).all() if deal_ids else []
    return {int(r.id): DealState(int(r.id), r.status, r.stock_backend) for r in rows}


async def _write(conn: AsyncConnection, ctx: Context, plan: Plan,
                 found: dict[UUID, LockedOrder]) -> None:
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


async def _after_commit(ctx: Context, plan: Plan) -> None:
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
