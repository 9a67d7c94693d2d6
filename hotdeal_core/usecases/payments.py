"""The payment provider's callback: recorded once by payment id, turned into an event."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal
from uuid import UUID

from sqlalchemy import func
from sqlalchemy.dialects.postgresql import insert

from hotdeal_core.db.tables import orders, payments
from hotdeal_core.domain import OrderStatus
from hotdeal_core.errors import NotFound, Unprocessable
from hotdeal_core.outbox import add_event
from hotdeal_core.usecases.context import Context
from hotdeal_core.usecases.views import load_order
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


async def record_payment(ctx: Context, cb: PaymentCallback) -> PaymentReceipt:
    """Idempotent by payment id: a replay is acknowledged and changes nothing.

    An unknown order or an amount different from the order's total is refused, and the
    refusal is recorded (the row keeps the outcome) so that it can be investigated.
    """
    async with ctx.engine.begin() as conn:
        order = await load_order(conn, cb.order_id)
        if order is None:
            outcome = "order_not_found"
        elif cb.amount != order.total:
            outcome = "amount_mismatch"
        else:
            outcome = "accepted"
        inserted = (await conn.execute(
            insert(payments).values(payment_id=cb.payment_id, order_id=cb.order_id,
                                    status=cb.status, amount=cb.amount, outcome=outcome)
            .on_conflict_do_nothing(index_elements=["payment_id"])
            .returning(payments.c.id))).first()
        if inserted is None:
            first = (await conn.execute(payments.select().where(
                payments.c.payment_id == cb.payment_id))).one()
            return PaymentReceipt(cb.payment_id, first.outcome, duplicate=True)
        if outcome == "accepted" and cb.status == "succeeded":
            # Accepted in time: the expiry sweeper must not cancel the order any more (it
            # checks paid_at in its compare-and-set, which this row lock makes it wait for).
            await conn.execute(orders.update().where(
                orders.c.id == cb.order_id, orders.c.status == OrderStatus.PENDING,
                orders.c.paid_at.is_(None), orders.c.expires_at >= func.now())
                .values(paid_at=func.now()))
        if outcome == "accepted":
            event_type = PaymentSucceeded if cb.status == "succeeded" else PaymentFailed
            await add_event(conn, ctx.topics, event_type(
                order_id=cb.order_id, payment_id=cb.payment_id, amount=cb.amount))
    if outcome == "order_not_found":
        raise NotFound("order_not_found", f"order {cb.order_id} does not exist")
    if outcome == "amount_mismatch":
        assert order is not None
        raise Unprocessable("amount_mismatch",
                            f"amount {cb.amount} differs from the order total {order.total}")
    ctx.outbox_written()
    return PaymentReceipt(cb.payment_id, outcome, duplicate=False)
