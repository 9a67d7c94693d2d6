"""Money edges, tried as a payment provider would (issue 17, items 1-3): a declined attempt
then a payment in time while the stock worker lags, one payment id reported failed then
succeeded, a successful payment of the wrong amount or for no known order."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import select

from hotdeal_core.db.tables import orders, outbox, payments
from hotdeal_core.domain import CancelReason
from hotdeal_core.errors import Conflict
from hotdeal_core.usecases.context import Context
from hotdeal_core.usecases.deals import StartDeal, start_deal
from hotdeal_core.usecases.orders import PlaceOrder, place_order, request_cancellation
from hotdeal_core.usecases.payments import PaymentCallback, record_payment
from hotdeal_core.usecases.settlement import cancel_order, confirm_order, settle_batch
from hotdeal_core.usecases.settlement_plan import Cancel, Confirm
from hotdeal_core.usecases.views import OrderView
from tests.conftest import ProductFactory
from tests.random_refs import random_user


async def _order(ctx: Context, new_product: ProductFactory) -> OrderView:
    pid = await new_product(stock=5, price=700)
    await start_deal(ctx, StartDeal(pid, 5, 1))
    return await place_order(ctx, PlaceOrder(pid, random_user(), 1))


async def _state(ctx: Context, order_id: uuid.UUID) -> tuple[str, str | None]:
    async with ctx.engine.connect() as conn:
        row = (await conn.execute(select(orders.c.status, orders.c.payment_id).where(
            orders.c.id == order_id))).one()
    return str(row.status), row.payment_id


async def _events(ctx: Context, order_id: uuid.UUID, kind: str) -> list[dict[str, object]]:
    async with ctx.engine.connect() as conn:
        return [dict(p) for p in (await conn.execute(select(outbox.c.payload).where(
            outbox.c.key == str(order_id), outbox.c.event_type == kind).order_by(outbox.c.id))
        ).scalars().all()]


def _pid() -> str:
    return f"pay-{uuid.uuid4().hex}"


async def test_a_declined_attempt_applied_late_never_cancels_an_order_paid_in_time(
        ctx: Context, new_product: ProductFactory) -> None:
    order = await _order(ctx, new_product)
    p1, p2 = _pid(), _pid()
    await record_payment(ctx, PaymentCallback(p1, order.id, "failed", order.total))
    await record_payment(ctx, PaymentCallback(p2, order.id, "succeeded", order.total))
    # The stock worker lagged: it applies p1's failure, then p2's success, in two batches.
    failed = await cancel_order(ctx, order.id, CancelReason.PAYMENT_FAILED)
    assert failed.outcome == "no_change"
    await confirm_order(ctx, order.id, payment_id=p2, amount=order.total)
    assert await _state(ctx, order.id) == ("CONFIRMED", p2)
    assert await _events(ctx, order.id, "RefundRequested") == []


async def test_a_declined_attempt_and_a_payment_in_one_late_batch_confirm_the_order(
        ctx: Context, new_product: ProductFactory) -> None:
    order = await _order(ctx, new_product)
    p1, p2 = _pid(), _pid()
    await record_payment(ctx, PaymentCallback(p1, order.id, "failed", order.total))
    await record_payment(ctx, PaymentCallback(p2, order.id, "succeeded", order.total))
    await settle_batch(ctx, [Cancel(order.id, CancelReason.PAYMENT_FAILED, uuid.uuid4()),
                             Confirm(order.id, p2, order.total, uuid.uuid4())])
    assert await _state(ctx, order.id) == ("CONFIRMED", p2)
    assert await _events(ctx, order.id, "RefundRequested") == []


async def test_one_payment_id_failed_then_succeeded_is_a_new_fact_that_confirms(
        ctx: Context, new_product: ProductFactory) -> None:
    order = await _order(ctx, new_product)
    pay = _pid()
    declined = await record_payment(ctx, PaymentCallback(pay, order.id, "failed", order.total))
    paid = await record_payment(ctx, PaymentCallback(pay, order.id, "succeeded", order.total))
    assert (declined.duplicate, paid.duplicate, paid.outcome) == (False, False, "accepted")
    assert [e["type"] for e in await _events(ctx, order.id, "PaymentSucceeded")] == [
        "PaymentSucceeded"]
    replay = await record_payment(ctx, PaymentCallback(pay, order.id, "succeeded", order.total))
    assert (replay.duplicate, replay.outcome) == (True, "accepted")
    await cancel_order(ctx, order.id, CancelReason.PAYMENT_FAILED)  # the failure, applied late
    await confirm_order(ctx, order.id, payment_id=pay, amount=order.total)
    assert await _state(ctx, order.id) == ("CONFIRMED", pay)
    async with ctx.engine.connect() as conn:
        recorded = sorted((await conn.execute(select(payments.c.status).where(
            payments.c.payment_id == pay))).scalars().all())
    assert recorded == ["failed", "succeeded"]


async def test_a_payment_id_that_succeeds_after_its_failure_cancelled_the_order_is_refunded(
        ctx: Context, new_product: ProductFactory) -> None:
    order = await _order(ctx, new_product)
    pay = _pid()
    await record_payment(ctx, PaymentCallback(pay, order.id, "failed", order.total))
    await cancel_order(ctx, order.id, CancelReason.PAYMENT_FAILED)  # a worker that keeps up
    await record_payment(ctx, PaymentCallback(pay, order.id, "succeeded", order.total))
    await confirm_order(ctx, order.id, payment_id=pay, amount=order.total)
    assert (await _state(ctx, order.id))[0] == "CANCELLED"
    refunds = await _events(ctx, order.id, "RefundRequested")
    assert [(r["payment_id"], r["reason"]) for r in refunds] == [(pay, "order_cancelled")]


async def test_a_successful_payment_of_the_wrong_amount_is_acknowledged_and_refunded(
        ctx: Context, new_product: ProductFactory) -> None:
    order = await _order(ctx, new_product)
    pay = _pid()
    receipt = await record_payment(ctx, PaymentCallback(pay, order.id, "succeeded", 1))
    assert (receipt.outcome, receipt.duplicate) == ("amount_mismatch", False)
    again = await record_payment(ctx, PaymentCallback(pay, order.id, "succeeded", 1))
    assert (again.outcome, again.duplicate) == ("amount_mismatch", True)
    refunds = await _events(ctx, order.id, "RefundRequested")
    assert [(r["payment_id"], r["reason"], r["amount"]) for r in refunds] == [
        (pay, "amount_mismatch", 1)]
    assert await _events(ctx, order.id, "PaymentSucceeded") == []
    assert await _state(ctx, order.id) == ("PENDING", None)  # the order keeps its own fate


async def test_a_successful_payment_for_no_known_order_is_acknowledged_and_refunded(
        ctx: Context) -> None:
    missing, pay = uuid.uuid4(), _pid()
    receipt = await record_payment(ctx, PaymentCallback(pay, missing, "succeeded", 900))
    assert receipt.outcome == "order_not_found"
    refunds = await _events(ctx, missing, "RefundRequested")
    assert [(r["payment_id"], r["reason"]) for r in refunds] == [(pay, "order_not_found")]
    failed = await record_payment(ctx, PaymentCallback(_pid(), missing, "failed", 900))
    assert failed.outcome == "order_not_found"
    assert len(await _events(ctx, missing, "RefundRequested")) == 1  # no money taken: none


async def test_a_buyer_cannot_cancel_an_order_paid_in_time(
        ctx: Context, new_product: ProductFactory) -> None:
    order = await _order(ctx, new_product)
    await record_payment(ctx, PaymentCallback(_pid(), order.id, "succeeded", order.total))
    with pytest.raises(Conflict) as refused:
        await request_cancellation(ctx, order.id, order.user_id)
    assert refused.value.code == "invalid_state"
    # Even a cancel request recorded before the payment is ignored by the worker.
    assert (await cancel_order(ctx, order.id, CancelReason.USER_CANCELLED)).outcome == \
        "no_change"
    assert (await _state(ctx, order.id))[0] == "PENDING"
