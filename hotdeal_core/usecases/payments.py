"""Payment callbacks: each fact (payment id, status) recorded once and turned into an event;
`record_payments` is the group commit of many (hotdeal_core/batching.py)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal
from uuid import UUID

from hotdeal_core.messaging.outbox import OutboxRow
from hotdeal_core.ports.settlement import PaymentFact, SettlementDb
from hotdeal_core.usecases.context import Context
from schemas.events import AnyEvent, PaymentFailed, PaymentSucceeded, RefundRequested


@dataclass(frozen=True, slots=True)
class PaymentCallback:
    payment_id: str
    order_id: UUID
    status: Literal["succeeded", "failed"]
    amount: int
    headers: dict[str, str] | None = None  # its request's trace context, for its event


@dataclass(frozen=True, slots=True)
class PaymentReceipt:
    payment_id: str
    outcome: str
    duplicate: bool


async def record_payment(ctx: Context, cb: PaymentCallback) -> PaymentReceipt:
    """Record one payment callback, in this process's group commit when it has one."""
    if ctx.payment_writer is not None:
        receipt: PaymentReceipt = await ctx.payment_writer.submit(cb)
        return receipt
    outcome = (await record_payments(ctx.settlement_db, [cb], None))[0]
    if isinstance(outcome, BaseException):
        raise outcome
    ctx.outbox_written()
    return outcome


async def record_payments(db: SettlementDb, items: list[PaymentCallback],
                          publish_now: Callable[[list[OutboxRow]], None] | None,
                          ) -> list[PaymentReceipt | BaseException]:
    """Record `items` in one transaction, each with the outcome it would get alone: a replayed
    fact gets its first outcome; a success that cannot belong to its order is refunded."""
    async with db.transaction() as tx:
        totals = await tx.order_totals(list({cb.order_id for cb in items}))
        outcome = {id(cb): _judge(cb, totals) for cb in items}
        firsts = list({_fact(cb): cb for cb in reversed(items)}.values())  # 1st of each fact
        inserted = await tx.record_payment_facts([
            PaymentFact(cb.payment_id, cb.order_id, cb.status, cb.amount, outcome[id(cb)])
            for cb in firsts])
        new = [cb for cb in firsts if _fact(cb) in inserted]
        paid = [cb.order_id for cb in new
                if outcome[id(cb)] == "accepted" and cb.status == "succeeded"]
        if paid:
            await tx.mark_paid_in_time(paid)
        evented = [(cb, e) for cb in new if (e := _event(cb, outcome[id(cb)])) is not None]
        rows = await tx.add_events([e for _, e in evented], claim=publish_now is not None,
                                   headers=[cb.headers for cb, _ in evented])
        new_ids = {id(cb) for cb in new}
        replayed = [cb.payment_id for cb in items if id(cb) not in new_ids]
        first_outcome = await tx.first_outcomes(replayed) if replayed else {}
    if publish_now is not None and rows:
        publish_now(rows)
    return [PaymentReceipt(cb.payment_id, outcome[id(cb)], duplicate=False)
            if id(cb) in new_ids
            else PaymentReceipt(cb.payment_id, first_outcome[_fact(cb)], duplicate=True)
            for cb in items]


def _fact(cb: PaymentCallback) -> tuple[str, str]:
    return cb.payment_id, cb.status


def _judge(cb: PaymentCallback, totals: dict[UUID, int]) -> str:
    total = totals.get(cb.order_id)
    if total is None:
        return "order_not_found"
    return "accepted" if cb.amount == total else "amount_mismatch"


def _event(cb: PaymentCallback, outcome: str) -> AnyEvent | None:
    """What a new fact publishes: the payment for the stock worker, or, for money taken that
    cannot belong to its order, its refund (`outcome` names the reason)."""
    if outcome == "accepted":
        kind = PaymentSucceeded if cb.status == "succeeded" else PaymentFailed
        return kind(order_id=cb.order_id, payment_id=cb.payment_id, amount=cb.amount)
    if cb.status == "succeeded":
        return RefundRequested(order_id=cb.order_id, payment_id=cb.payment_id,
                               amount=cb.amount, reason=outcome)
    return None  # a failed payment that matches nothing: recorded, nothing to give back
