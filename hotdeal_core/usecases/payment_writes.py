"""Group commit of payment callbacks: the payments of concurrent webhooks recorded in one
transaction (see hotdeal_core/batching.py), each with the outcome it would get alone.

A fact is (payment id, status): the same pair again is a replay, acknowledged with the first
outcome, changing nothing; a known id with a new status is a new fact. Every callback is
recorded and acknowledged: a success that cannot belong to its order (unknown order, wrong
amount) asks for its refund in the same transaction, and the order keeps its own fate. An
accepted success while the order is PENDING and before `expires_at` marks it `paid_at`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal
from uuid import UUID

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from hotdeal_core.messaging.outbox import OutboxRow, add_events
from hotdeal_core.messaging.topics import Topics
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


_TOTALS = text("SELECT id, quantity * unit_price AS total FROM orders WHERE id = ANY(:ids)")
_INSERT = text("""
    INSERT INTO payments (payment_id, order_id, status, amount, outcome)
    SELECT * FROM unnest(CAST(:payment_ids AS text[]), CAST(:order_ids AS uuid[]),
                         CAST(:statuses AS text[]), CAST(:amounts AS bigint[]),
                         CAST(:outcomes AS text[]))
    ON CONFLICT (payment_id, status) DO NOTHING
    RETURNING payment_id, status
""")
_FIRST = text("SELECT payment_id, status, outcome FROM payments "
              "WHERE payment_id = ANY(:ids)")
_MARK_PAID = text("""
    UPDATE orders SET paid_at = now()
    WHERE id = ANY(:ids) AND status = 'PENDING' AND paid_at IS NULL AND expires_at >= now()
""")


async def write_payments(engine: AsyncEngine, topics: Topics, items: list[PaymentCallback],
                         publish_now: Callable[[list[OutboxRow]], None] | None,
                         ) -> list[PaymentReceipt | BaseException]:
    """Record `items` in one transaction; one receipt per item."""
    async with engine.begin() as conn:
        totals: dict[UUID, int] = {row.id: int(row.total) for row in (await conn.execute(
            _TOTALS, {"ids": list({cb.order_id for cb in items})})).all()}
        outcome = {id(cb): _judge(cb, totals) for cb in items}
        firsts = list({_fact(cb): cb for cb in reversed(items)}.values())  # 1st of each fact
        inserted = {(str(p), str(s)) for p, s in (await conn.execute(_INSERT, {
            "payment_ids": [cb.payment_id for cb in firsts],
            "order_ids": [cb.order_id for cb in firsts],
            "statuses": [cb.status for cb in firsts], "amounts": [cb.amount for cb in firsts],
            "outcomes": [outcome[id(cb)] for cb in firsts]})).all()}
        new = [cb for cb in firsts if _fact(cb) in inserted]
        paid = [cb.order_id for cb in new
                if outcome[id(cb)] == "accepted" and cb.status == "succeeded"]
        if paid:
            await conn.execute(_MARK_PAID, {"ids": paid})
        evented = [(cb, e) for cb in new if (e := _event(cb, outcome[id(cb)])) is not None]
        rows = await add_events(conn, topics, [e for _, e in evented],
                                claim=publish_now is not None,
                                headers=[cb.headers for cb, _ in evented])
        new_ids = {id(cb) for cb in new}
        replayed = [cb.payment_id for cb in items if id(cb) not in new_ids]
        first_outcome: dict[tuple[str, str], str] = {
            (str(p), str(s)): str(o) for p, s, o in (await conn.execute(
                _FIRST, {"ids": replayed})).all()} if replayed else {}
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
