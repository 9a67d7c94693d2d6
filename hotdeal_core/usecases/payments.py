"""The payment provider's callback: recorded once by payment id, turned into an event."""

from __future__ import annotations

from hotdeal_core.usecases.context import Context
from hotdeal_core.usecases.payment_writes import PaymentCallback, PaymentReceipt, write_payments

__all__ = ["PaymentCallback", "PaymentReceipt", "record_payment"]


async def record_payment(ctx: Context, cb: PaymentCallback) -> PaymentReceipt:
    """Record one payment callback, in this process's group commit when it has one (see
    `usecases/payment_writes.py` for the rules)."""
    if ctx.payment_writer is not None:
        receipt: PaymentReceipt = await ctx.payment_writer.submit(cb)
        return receipt
    outcome = (await write_payments(ctx.engine, ctx.topics, [cb], None))[0]
    if isinstance(outcome, BaseException):
        raise outcome
    ctx.outbox_written()
    return outcome
