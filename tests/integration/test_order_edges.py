"""Edges where a flash sale's promises used to break: retries with an idempotency key after
the sell-out or after a failed write, a payment accepted in time racing the expiry sweeper,
and a second payment of a confirmed order."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import replace

import pytest
from sqlalchemy import select, text

from hotdeal_core.db.engine import make_engine
from hotdeal_core.db.tables import orders, outbox
from hotdeal_core.errors import Conflict, DependencyUnavailable
from hotdeal_core.stock.sold_out import SoldOutMemo
from hotdeal_core.usecases.context import Context
from hotdeal_core.usecases.deals import StartDeal, start_deal
from hotdeal_core.usecases.orders import PlaceOrder, place_order
from hotdeal_core.usecases.payments import PaymentCallback, record_payment
from hotdeal_core.usecases.settlement import confirm_order, expire_due_orders
from hotdeal_core.usecases.views import OrderView
from tests.conftest import ProductFactory
from tests.random_refs import random_user


async def _deal(ctx: Context, new_product: ProductFactory, stock: int) -> int:
    pid = await new_product(stock=stock, price=700)
    await start_deal(ctx, StartDeal(pid, stock, 1))
    return pid


async def _status(ctx: Context, order_id: uuid.UUID) -> str:
    async with ctx.engine.connect() as conn:
        return str((await conn.execute(select(orders.c.status).where(
            orders.c.id == order_id))).scalar_one())


async def _expire_now(ctx: Context, order_id: uuid.UUID) -> None:
    async with ctx.engine.begin() as conn:
        await conn.execute(text("UPDATE orders SET expires_at = now() - interval '1 second' "
                                "WHERE id = :id"), {"id": order_id})


async def _refunds(ctx: Context, order_id: uuid.UUID) -> list[dict[str, object]]:
    async with ctx.engine.connect() as conn:
        return [dict(p) for p in (await conn.execute(select(outbox.c.payload).where(
            outbox.c.key == str(order_id), outbox.c.event_type == "RefundRequested"))
        ).scalars().all()]


async def _pay(ctx: Context, order: OrderView, payment_id: str | None = None) -> str:
    payment_id = payment_id or f"pay-{uuid.uuid4().hex}"
    await record_payment(ctx, PaymentCallback(payment_id, order.id, "succeeded", order.total))
    return payment_id


async def test_a_keyed_retry_after_the_sell_out_gets_its_order_not_sold_out(
        ctx: Context, new_product: ProductFactory) -> None:
    memo_ctx = replace(ctx, sold_out=SoldOutMemo(60.0))  # a memo armed for the whole test
    pid = await _deal(memo_ctx, new_product, 1)
    buyer = random_user()
    first = await place_order(memo_ctx, PlaceOrder(pid, buyer, 1, "k-last-unit"))
    with pytest.raises(Conflict, match="sold out"):  # arms the sold-out memo
        await place_order(memo_ctx, PlaceOrder(pid, random_user(), 1))
    assert memo_ctx.sold_out.sold_out(pid)
    retry = await place_order(memo_ctx, PlaceOrder(pid, buyer, 1, "k-last-unit"))
    assert retry.id == first.id
    with pytest.raises(Conflict, match="sold out"):  # unkeyed requests still hit the memo
        await place_order(memo_ctx, PlaceOrder(pid, random_user(), 1))


async def test_a_keyed_retry_after_a_failed_write_is_served_anew(
        ctx: Context, new_product: ProductFactory) -> None:
    pid = await _deal(ctx, new_product, 3)
    narrow = replace(ctx, engine=make_engine(ctx.settings.model_copy(update={
        "db_pool_timeout": 0.2, "db_max_overflow": 0}), pool_size=1))
    buyer = random_user()
    try:
        held = await narrow.engine.connect()  # the pool's only connection: the write times out
        try:
            with pytest.raises(DependencyUnavailable):  # the engine's word for it
                await place_order(narrow, PlaceOrder(pid, buyer, 1, "k-retry"))
        finally:
            await held.close()
        assert (await ctx.stock.peek(pid)).stock == 3  # the reservation was released
        retry = await place_order(narrow, PlaceOrder(pid, buyer, 1, "k-retry"))
    finally:
        await narrow.engine.dispose()
    assert retry.status == "PENDING"  # not "idempotency_in_progress" for the rest of the deal
    assert (await ctx.stock.peek(pid)).stock == 2


async def test_an_order_paid_in_time_is_never_expired(ctx: Context,
                                                      new_product: ProductFactory) -> None:
    pid = await _deal(ctx, new_product, 5)
    paid = await place_order(ctx, PlaceOrder(pid, random_user(), 1))
    unpaid = await place_order(ctx, PlaceOrder(pid, random_user(), 1))
    payment_id = await _pay(ctx, paid)  # accepted in time; the stock worker lags
    await _expire_now(ctx, paid.id)
    await _expire_now(ctx, unpaid.id)
    await expire_due_orders(ctx, batch_size=10_000)
    assert await _status(ctx, paid.id) == "PENDING"
    assert await _status(ctx, unpaid.id) == "CANCELLED"
    result = await confirm_order(ctx, paid.id, payment_id=payment_id, amount=paid.total)
    assert result.status == "CONFIRMED" and await _refunds(ctx, paid.id) == []


async def test_a_payment_accepted_after_the_expiry_is_refunded(
        ctx: Context, new_product: ProductFactory) -> None:
    pid = await _deal(ctx, new_product, 5)
    late = await place_order(ctx, PlaceOrder(pid, random_user(), 1))
    await _expire_now(ctx, late.id)
    payment_id = await _pay(ctx, late)
    await expire_due_orders(ctx, batch_size=10_000)
    assert await _status(ctx, late.id) == "CANCELLED"
    await confirm_order(ctx, late.id, payment_id=payment_id, amount=late.total)
    assert [r["reason"] for r in await _refunds(ctx, late.id)] == ["order_cancelled"]


async def test_the_sweeper_racing_a_payment_never_cancels_a_paid_order(
        ctx: Context, new_product: ProductFactory) -> None:
    pid = await _deal(ctx, new_product, 30)
    placed = [await place_order(ctx, PlaceOrder(pid, random_user(), 1)) for _ in range(30)]

    async def pay_then_expire(order: OrderView) -> None:
        await _pay(ctx, order)
        await _expire_now(ctx, order.id)

    sweeps = [expire_due_orders(ctx, batch_size=10_000) for _ in range(5)]
    await asyncio.gather(*(pay_then_expire(o) for o in placed), *sweeps)
    await expire_due_orders(ctx, batch_size=10_000)
    assert {await _status(ctx, o.id) for o in placed} == {"PENDING"}


async def test_a_second_successful_payment_of_a_confirmed_order_is_refunded(
        ctx: Context, new_product: ProductFactory) -> None:
    pid = await _deal(ctx, new_product, 5)
    order = await place_order(ctx, PlaceOrder(pid, random_user(), 1))
    first = await _pay(ctx, order)
    await confirm_order(ctx, order.id, payment_id=first, amount=order.total)
    second = await _pay(ctx, order)
    result = await confirm_order(ctx, order.id, payment_id=second, amount=order.total)
    assert (result.outcome, result.status) == ("no_change", "CONFIRMED")
    refunds = await _refunds(ctx, order.id)
    assert [(r["payment_id"], r["reason"], r["amount"]) for r in refunds] == [
        (second, "duplicate_payment", order.total)]
    # The confirming payment delivered again (an at-least-once replay) refunds nothing.
    await confirm_order(ctx, order.id, payment_id=first, amount=order.total)
    assert len(await _refunds(ctx, order.id)) == 1


async def test_a_payment_after_an_admin_confirm_is_kept(ctx: Context,
                                                        new_product: ProductFactory) -> None:
    pid = await _deal(ctx, new_product, 5)
    order = await place_order(ctx, PlaceOrder(pid, random_user(), 1))
    await confirm_order(ctx, order.id, payment_id=None)
    payment_id = await _pay(ctx, order)
    await confirm_order(ctx, order.id, payment_id=payment_id, amount=order.total)
    assert await _refunds(ctx, order.id) == []
    await confirm_order(ctx, order.id, payment_id=await _pay(ctx, order), amount=order.total)
    assert [r["reason"] for r in await _refunds(ctx, order.id)] == ["duplicate_payment"]
