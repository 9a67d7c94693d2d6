"""Group commit of payment callbacks: the payments of concurrent webhooks recorded in one
transaction (see hotdeal_core/batching.py), each with the outcome it would get alone.

Idempotent by payment id: a replay (also one inside the same batch) is acknowledged with
the first outcome and changes nothing. An unknown order or an amount different from the
order's total is refused, and the refusal is recorded so that it can be investigated. A
successful payment accepted while its order is PENDING and before `expires_at` marks the
order `paid_at` in the same transaction: the expiry sweeper's compare-and-set checks it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal
from uuid import UUID

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from hotdeal_core.errors import NotFound, Unprocessable
from hotdeal_core.messaging.outbox import OutboxRow, add_events
from hotdeal_core.messaging.topics import Topics
from schemas.events import PaymentFailed, PaymentSucceeded


@dataclass(frozen=True, slots=True)
class PaymentCallback:
    payment_id: str
    order_id: UUID
    status: Literal["succeeded", "failed"]
    amount: int


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
    ON CONFLICT (payment_id) DO NOTHING
    RETURNING payment_id
""")
_FIRST = text("SELECT payment_id, outcome FROM payments WHERE payment_id = ANY(:ids)")
_MARK_PAID = text("""
    UPDATE orders SET paid_at = now()
    WHERE id = ANY(:ids) AND status = 'PENDING' AND paid_at IS NULL AND expires_at >= now()
""")


async def write_payments(engine: AsyncEngine, topics: Topics, items: list[PaymentCallback],
                         publish_now: Callable[[list[OutboxRow]], None] | None,
                         ) -> list[PaymentReceipt | BaseException]:
    """Record `items` in one transaction; one outcome per item (a receipt, or the refusal)."""
    async with engine.begin() as conn:
        totals: dict[UUID, int] = {row.id: int(row.total) for row in (await conn.execute(
            _TOTALS, {"ids": list({cb.order_id for cb in items})})).all()}
        outcome = {id(cb): _judge(cb, totals) for cb in items}
        firsts = list({cb.payment_id: cb for cb in reversed(items)}.values())  # 1st of each id
        inserted = set((await conn.execute(_INSERT, {
            "payment_ids": [cb.payment_id for cb in firsts],
            "order_ids": [cb.order_id for cb in firsts],
            "statuses": [cb.status for cb in firsts], "amounts": [cb.amount for cb in firsts],
            "outcomes": [outcome[id(cb)] for cb in firsts]})).scalars().all())
        new = [cb for cb in firsts if cb.payment_id in inserted]
        accepted = [cb for cb in new if outcome[id(cb)] == "accepted"]
        paid = [cb.order_id for cb in accepted if cb.status == "succeeded"]
        if paid:
            await conn.execute(_MARK_PAID, {"ids": paid})
        rows = await add_events(conn, topics, [_event(cb) for cb in accepted],
                                claim=publish_now is not None)
        new_ids = {id(cb) for cb in new}
        replayed = [cb.payment_id for cb in items if id(cb) not in new_ids]
        first_outcome: dict[str, str] = {p: str(o) for p, o in (await conn.execute(
            _FIRST, {"ids": replayed})).all()} if replayed else {}
    if publish_now is not None and rows:
        publish_now(rows)
    return [_receipt(cb, outcome[id(cb)], totals) if id(cb) in new_ids
            else PaymentReceipt(cb.payment_id, first_outcome[cb.payment_id], duplicate=True)
            for cb in items]


def _judge(cb: PaymentCallback, totals: dict[UUID, int]) -> str:
    total = totals.get(cb.order_id)
    if total is None:
        return "order_not_found"
    return "accepted" if cb.amount == total else "amount_mismatch"


def _event(cb: PaymentCallback) -> Any:
    kind = PaymentSucceeded if cb.status == "succeeded" else PaymentFailed
    return kind(order_id=cb.order_id, payment_id=cb.payment_id, amount=cb.amount)


def _receipt(cb: PaymentCallback, outcome: str,
             totals: dict[UUID, int]) -> PaymentReceipt | BaseException:
    if outcome == "order_not_found":
        return NotFound("order_not_found", f"order {cb.order_id} does not exist")
    if outcome == "amount_mismatch":
        return Unprocessable("amount_mismatch", f"amount {cb.amount} differs from the order "
                                                f"total {totals[cb.order_id]}")
    return PaymentReceipt(cb.payment_id, outcome, duplicate=False)
