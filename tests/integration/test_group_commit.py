"""Group commits against real Postgres and Redis: each order and payment of a batch gets
the outcome it would get alone; rows are born claimed and handed to the publisher."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import replace
from datetime import UTC, datetime

from sqlalchemy import select, text

from hotdeal_core.batching import Batcher
from hotdeal_core.db.tables import orders, outbox, payments
from hotdeal_core.messaging.outbox import OutboxRow
from hotdeal_core.ports.orders import Fenced, NotWritten, ReservedOrder
from hotdeal_core.stock.reserver import reservation_batcher
from hotdeal_core.usecases.context import Context
from hotdeal_core.usecases.deals import StartDeal, start_deal
from hotdeal_core.usecases.orders import PlaceOrder, place_order
from hotdeal_core.usecases.payments import PaymentCallback, record_payment, record_payments
from hotdeal_core.usecases.views import OrderView
from tests.conftest import ProductFactory
from tests.random_refs import random_user


def _item(pid: int, deal_id: int, epoch: int, order_id: uuid.UUID | None = None,
          ) -> ReservedOrder:
    order_id = order_id or uuid.uuid4()
    return ReservedOrder(order_id, pid, deal_id, epoch, random_user(), 1, 700, None, 600,
                         "test.orders")


async def _deal(ctx: Context, new_product: ProductFactory, stock: int = 50) -> tuple[int, int]:
    pid = await new_product(stock=stock, price=700)
    return pid, (await start_deal(ctx, StartDeal(pid, stock, 1))).deal_id


async def test_a_batch_writes_live_orders_and_fences_the_others(
        ctx: Context, new_product: ProductFactory) -> None:
    live_pid, live_deal = await _deal(ctx, new_product)
    old_pid, old_deal = await _deal(ctx, new_product)
    async with ctx.engine.begin() as conn:  # a rebuild moved this deal to epoch 2
        await conn.execute(text("UPDATE hot_deals SET epoch = 2 WHERE id = :d"),
                           {"d": old_deal})
    voided = uuid.uuid4()
    async with ctx.engine.begin() as conn:  # the orphan sweeper voided this id already
        await conn.execute(orders.insert().values(
            id=voided, product_id=live_pid, hot_deal_id=live_deal, user_id="x", quantity=1,
            unit_price=700, status="CANCELLED", cancel_reason="orphaned",
            expires_at=datetime.now(UTC)))
    items = [_item(live_pid, live_deal, 1), _item(old_pid, old_deal, 1),
             _item(live_pid, live_deal, 1, voided), _item(live_pid, live_deal, 1)]
    handed: list[OutboxRow] = []
    outcomes = await ctx.orders_db.write_reserved_orders(items, handed.extend)
    assert isinstance(outcomes[0], OrderView) and isinstance(outcomes[3], OrderView)
    assert isinstance(outcomes[1], Fenced) and isinstance(outcomes[2], NotWritten)
    assert sorted(r.key for r in handed) == sorted([str(items[0].order_id),
                                                    str(items[3].order_id)])
    async with ctx.engine.connect() as conn:
        claimed = (await conn.execute(select(outbox.c.claimed_until).where(
            outbox.c.id.in_([r.id for r in handed])))).scalars().all()
        written = (await conn.execute(select(orders.c.id).where(orders.c.id.in_(
            [i.order_id for i in items])))).scalars().all()
    assert len(claimed) == 2 and all(c is not None for c in claimed)  # born claimed
    assert set(written) == {items[0].order_id, items[3].order_id, voided}


async def test_concurrent_buyers_through_the_group_commit_never_oversell(
        ctx: Context, new_product: ProductFactory) -> None:
    pid, _ = await _deal(ctx, new_product, stock=40)

    async def write(items: list[ReservedOrder]) -> list[OrderView | BaseException]:
        return await ctx.orders_db.write_reserved_orders(items, None)

    writer: Batcher[ReservedOrder, OrderView] = Batcher("orders", write)
    reserver = reservation_batcher(ctx.stock, max_batch=1000)
    batched = replace(ctx, order_writer=writer, reserver=reserver)
    writer.start()
    reserver.start()
    try:
        results = await asyncio.gather(
            *(place_order(batched, PlaceOrder(pid, random_user(), 1)) for _ in range(300)),
            return_exceptions=True)
    finally:
        await reserver.stop()
        await writer.stop()
    accepted = [r for r in results if isinstance(r, OrderView)]
    assert len(accepted) == 40
    assert {getattr(r, "code", None) for r in results if r not in accepted} == {"sold_out"}
    assert writer.stats.batches < 40  # the orders shared commits
    assert reserver.stats.batches < 300  # and the buyers shared script calls
    async with ctx.engine.connect() as conn:
        rows = (await conn.execute(select(orders.c.id).where(
            orders.c.product_id == pid, orders.c.status == "PENDING"))).scalars().all()
    assert set(rows) == {o.id for o in accepted}
    assert (await ctx.stock.peek(pid)).stock == 0


async def test_a_payment_batch_judges_each_callback_alone(
        ctx: Context, new_product: ProductFactory) -> None:
    pid, _ = await _deal(ctx, new_product)
    order = await place_order(ctx, PlaceOrder(pid, random_user(), 1))
    other = await place_order(ctx, PlaceOrder(pid, random_user(), 1))
    pay = f"pay-{uuid.uuid4().hex}"
    items = [PaymentCallback(pay, order.id, "succeeded", order.total),
             PaymentCallback(pay, order.id, "succeeded", order.total),  # a replay, same batch
             PaymentCallback(f"pay-{uuid.uuid4().hex}", other.id, "succeeded", 1),
             PaymentCallback(f"pay-{uuid.uuid4().hex}", uuid.uuid4(), "failed", 5)]
    handed: list[OutboxRow] = []
    first, replay, mismatch, unknown = await record_payments(ctx.settlement_db, items,
                                                            handed.extend)
    assert (first.outcome, first.duplicate) == ("accepted", False)  # type: ignore[union-attr]
    assert (replay.outcome, replay.duplicate) == ("accepted", True)  # type: ignore[union-attr]
    assert (mismatch.outcome, unknown.outcome) == (  # type: ignore[union-attr]
        "amount_mismatch", "order_not_found")
    # One PaymentSucceeded, one refund of the wrong amount; the unknown order's failed
    # payment took no money: nothing to give back.
    assert sorted((r.key, r.payload["type"]) for r in handed) == sorted([
        (str(order.id), "PaymentSucceeded"), (str(other.id), "RefundRequested")])
    async with ctx.engine.connect() as conn:
        recorded = (await conn.execute(select(payments.c.outcome).where(
            payments.c.payment_id.in_([i.payment_id for i in items])))).scalars().all()
        paid = (await conn.execute(select(orders.c.id).where(
            orders.c.id.in_([order.id, other.id]), orders.c.paid_at.is_not(None))
        )).scalars().all()
    assert sorted(recorded) == ["accepted", "amount_mismatch", "order_not_found"]
    assert paid == [order.id]
    again = await record_payment(ctx, items[0])  # a replay in a later batch
    assert (again.outcome, again.duplicate) == ("accepted", True)
