"""Settling in batches against real Postgres and Redis: one transaction per batch, the
events of one order applied in order, a redelivered batch applying nothing twice and
releasing once, units given back wherever each order keeps them, and the expiry sweeper
cancelling its due orders in one transaction with one release call."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError
from sqlalchemy import select, text

from hotdeal_core.db.tables import hot_deals, orders, outbox, products
from hotdeal_core.domain import CancelReason
from hotdeal_core.errors import DependencyUnavailable
from hotdeal_core.stock.port import ReleaseOutcome
from hotdeal_core.stock.redis_errors import translated
from hotdeal_core.usecases.context import Context
from hotdeal_core.usecases.deals import StartDeal, start_deal
from hotdeal_core.usecases.flush import flush_deal
from hotdeal_core.usecases.orders import PlaceOrder, place_order
from hotdeal_core.usecases.settlement import expire_due_orders, settle_batch
from hotdeal_core.usecases.settlement_plan import Cancel, Command, Confirm
from hotdeal_core.usecases.views import OrderView
from tests.conftest import ProductFactory
from tests.random_refs import random_user

USER, FAILED, EXPIRED = (CancelReason.USER_CANCELLED, CancelReason.PAYMENT_FAILED,
                         CancelReason.EXPIRED)


class Recording:
    """The real store, with the calls to its release methods recorded; `fail_releases`
    makes that many release_many calls fail as if Redis went away after the commit."""

    def __init__(self, store: Any, fail_releases: int = 0) -> None:
        self._store = store
        self.fail_releases = fail_releases
        self.release_calls: list[uuid.UUID] = []
        self.release_many_calls: list[list[tuple[int, uuid.UUID]]] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    async def release(self, product_id: int, order_id: uuid.UUID) -> ReleaseOutcome:
        self.release_calls.append(order_id)
        return await self._store.release(product_id, order_id)

    async def release_many(self, items: Sequence[tuple[int, uuid.UUID]]
                           ) -> list[ReleaseOutcome]:
        self.release_many_calls.append(list(items))
        if self.fail_releases:
            self.fail_releases -= 1
            # As the store raises it (hotdeal_core.stock.redis_errors).
            raise translated(RedisConnectionError("Error 111 connecting to redis"))
        return await self._store.release_many(items)


async def _deal(ctx: Context, new_product: ProductFactory, stock: int) -> tuple[int, int]:
    pid = await new_product(stock=stock, price=700)
    return pid, (await start_deal(ctx, StartDeal(pid, stock, 1))).deal_id


async def _orders(ctx: Context, pid: int, n: int) -> list[OrderView]:
    return [await place_order(ctx, PlaceOrder(pid, random_user(), 1)) for _ in range(n)]


async def _rows(ctx: Context, ids: list[uuid.UUID]) -> dict[uuid.UUID, Any]:
    async with ctx.engine.connect() as conn:
        rows = (await conn.execute(select(orders).where(orders.c.id.in_(ids)))).all()
    return {r.id: r for r in rows}


async def _events(ctx: Context, order_id: uuid.UUID) -> list[tuple[str, dict[str, Any]]]:
    async with ctx.engine.connect() as conn:
        rows = (await conn.execute(select(outbox.c.event_type, outbox.c.payload).where(
            outbox.c.key == str(order_id)).order_by(outbox.c.id))).all()
    return [(r.event_type, dict(r.payload)) for r in rows]


async def _refunds(ctx: Context, order_id: uuid.UUID) -> list[tuple[str, str]]:
    return [(p["payment_id"], p["reason"]) for t, p in await _events(ctx, order_id)
            if t == "RefundRequested"]


async def test_the_events_of_one_order_apply_in_order_within_one_batch(
        ctx: Context, new_product: ProductFactory) -> None:
    pid, _ = await _deal(ctx, new_product, 10)
    a, b, c, d = await _orders(ctx, pid, 4)
    results = await settle_batch(ctx, [
        Cancel(a.id, USER, uuid.uuid4()), Confirm(b.id, "pb", 700, uuid.uuid4()),
        Confirm(a.id, "pa", 700, uuid.uuid4()),           # paid after the cancel: refund
        Cancel(b.id, FAILED, uuid.uuid4()),               # after the confirm: nothing
        Confirm(c.id, "pc1", 700, uuid.uuid4()),
        Confirm(c.id, "pc2", 700, uuid.uuid4()),          # a second payment: refund
        Confirm(d.id, None, None, uuid.uuid4()),          # admin confirm...
        Confirm(d.id, "pd", 700, uuid.uuid4())])          # ...then the order's payment
    assert [(r.outcome, r.status) for r in results] == [
        ("applied", "CANCELLED"), ("applied", "CONFIRMED"), ("no_change", "CANCELLED"),
        ("no_change", "CONFIRMED"), ("applied", "CONFIRMED"), ("no_change", "CONFIRMED"),
        ("applied", "CONFIRMED"), ("no_change", "CONFIRMED")]
    rows = await _rows(ctx, [a.id, b.id, c.id, d.id])
    assert [(rows[o.id].status, rows[o.id].payment_id) for o in (a, b, c, d)] == [
        ("CANCELLED", None), ("CONFIRMED", "pb"), ("CONFIRMED", "pc1"), ("CONFIRMED", "pd")]
    assert [t for t, _ in await _events(ctx, a.id)] == [
        "OrderPlaced", "OrderCancelled", "RefundRequested"]
    assert await _refunds(ctx, a.id) == [("pa", "order_cancelled")]
    assert await _refunds(ctx, c.id) == [("pc2", "duplicate_payment")]
    assert await _refunds(ctx, b.id) == [] and await _refunds(ctx, d.id) == []
    snap = await ctx.stock.snapshot(pid)  # a's unit is back; the others' records forgotten
    assert (snap.stock, snap.reservations) == (7, [])
    assert len({r.updated_at for r in rows.values()}) == 1  # one transaction


async def test_an_event_twice_in_one_batch_counts_once(ctx: Context,
                                                       new_product: ProductFactory) -> None:
    pid, _ = await _deal(ctx, new_product, 5)
    a, b = await _orders(ctx, pid, 2)
    cancelled, paid = uuid.uuid4(), uuid.uuid4()
    results = await settle_batch(ctx, [
        Cancel(a.id, FAILED, cancelled), Confirm(b.id, "pb", 700, paid),
        Cancel(a.id, FAILED, cancelled), Confirm(b.id, "pb", 700, paid)])
    assert [r.outcome for r in results] == ["applied", "applied", "already_processed",
                                            "already_processed"]
    assert (await ctx.stock.peek(pid)).stock == 4


async def test_a_redelivered_batch_applies_nothing_twice_and_releases_once(
        ctx: Context, new_product: ProductFactory) -> None:
    pid, _ = await _deal(ctx, new_product, 10)
    placed = await _orders(ctx, pid, 5)
    batch: list[Command] = [Confirm(placed[0].id, "p0", 700, uuid.uuid4()),
                            Cancel(placed[1].id, FAILED, uuid.uuid4()),
                            Confirm(placed[2].id, "p2", 700, uuid.uuid4()),
                            Cancel(placed[3].id, USER, uuid.uuid4()),
                            Confirm(placed[4].id, None, None, uuid.uuid4())]
    first = await settle_batch(ctx, batch)
    assert {r.outcome for r in first} == {"applied"}
    before = await _rows(ctx, [o.id for o in placed])
    events = {o.id: await _events(ctx, o.id) for o in placed}
    recording = Recording(ctx.stock)
    again = await settle_batch(replace(ctx, stock=recording), batch)
    assert {r.outcome for r in again} == {"already_processed"}
    after = await _rows(ctx, [o.id for o in placed])
    assert {k: (r.status, r.updated_at) for k, r in after.items()} == \
        {k: (r.status, r.updated_at) for k, r in before.items()}
    assert {o.id: await _events(ctx, o.id) for o in placed} == events
    # The redelivered cancellations release again (harmless: the record is gone)...
    assert sorted(recording.release_many_calls[0]) == sorted(
        [(pid, placed[1].id), (pid, placed[3].id)])
    # ...and the units came back once: 3 sold, 2 back on sale.
    assert (await ctx.stock.peek(pid)).stock == 7


async def test_a_release_lost_after_the_commit_is_made_good_by_the_redelivery(
        ctx: Context, new_product: ProductFactory) -> None:
    pid, _ = await _deal(ctx, new_product, 3)
    order, other = await _orders(ctx, pid, 2)
    batch: list[Command] = [Cancel(order.id, FAILED, uuid.uuid4()),
                            Cancel(other.id, USER, uuid.uuid4())]
    with pytest.raises(DependencyUnavailable):  # the worker sees an outage: redelivery
        await settle_batch(replace(ctx, stock=Recording(ctx.stock, fail_releases=1)), batch)
    rows = await _rows(ctx, [order.id, other.id])
    assert {r.status for r in rows.values()} == {"CANCELLED"}
    assert (await ctx.stock.peek(pid)).stock == 1  # committed, not yet released
    for _ in range(2):
        again = await settle_batch(ctx, batch)
        assert {r.outcome for r in again} == {"already_processed"}
        assert (await ctx.stock.peek(pid)).stock == 3


async def test_one_batch_gives_units_back_wherever_each_order_keeps_them(
        ctx: Context, db_ctx: Context, new_product: ProductFactory) -> None:
    redis_pid, _ = await _deal(ctx, new_product, 2)
    db_pid, db_deal = await _deal(db_ctx, new_product, 2)
    plain_pid = await new_product(stock=2, price=700)
    late_pid, late_deal = await _deal(ctx, new_product, 2)
    in_redis, in_db = await _orders(ctx, redis_pid, 1), await _orders(db_ctx, db_pid, 1)
    plain, late = await _orders(ctx, plain_pid, 1), await _orders(ctx, late_pid, 1)
    await flush_deal(ctx, late_deal)  # RECONCILED with `late` still PENDING
    results = await settle_batch(ctx, [Cancel(o[0].id, USER, uuid.uuid4())
                                       for o in (in_redis, in_db, plain, late)])
    assert {r.outcome for r in results} == {"applied"}
    released_to = {o[0].id: dict(await _events(ctx, o[0].id))["OrderCancelled"][
        "stock_released_to"] for o in (in_redis, in_db, plain, late)}
    assert list(released_to.values()) == ["redis", "db", "db", "db"]
    assert (await ctx.stock.peek(redis_pid)).stock == 2
    async with ctx.engine.connect() as conn:
        deal_rows = {r.id: r for r in (await conn.execute(select(
            hot_deals.c.id, hot_deals.c.remaining_stock, hot_deals.c.returned_stock).where(
            hot_deals.c.id.in_([db_deal, late_deal])))).all()}
        stock = dict((await conn.execute(select(products.c.id, products.c.stock).where(
            products.c.id.in_([plain_pid, late_pid])))).all())
    assert deal_rows[db_deal].remaining_stock == 2
    assert deal_rows[late_deal].returned_stock == 2  # 1 by the flush, 1 by the cancel
    assert stock == {plain_pid: 2, late_pid: 2}


async def test_concurrent_batches_over_the_same_orders_settle_each_once(
        ctx: Context, new_product: ProductFactory) -> None:
    pid, _ = await _deal(ctx, new_product, 20)
    placed = await _orders(ctx, pid, 20)
    confirms = [Confirm(o.id, f"p{i}", 700, uuid.uuid4()) for i, o in enumerate(placed)]
    cancels = [Cancel(o.id, USER, uuid.uuid4()) for o in reversed(placed)]
    first, second = await asyncio.gather(settle_batch(ctx, confirms),
                                         settle_batch(ctx, cancels))
    confirmed = sum(r.outcome == "applied" for r in first)
    assert confirmed + sum(r.outcome == "applied" for r in second) == 20
    assert confirmed in (0, 20)  # one batch, then the other: never interleaved
    assert (await ctx.stock.peek(pid)).stock == 20 - confirmed


async def _make_due(ctx: Context, ids: list[uuid.UUID], *, paid: bool = False) -> None:
    async with ctx.engine.begin() as conn:
        await conn.execute(text(
            "UPDATE orders SET expires_at = now() - interval '1 second', "
            "paid_at = CASE WHEN :paid THEN now() ELSE paid_at END WHERE id = ANY(:ids)"),
            {"ids": ids, "paid": paid})


async def test_the_sweeper_cancels_its_batch_in_one_transaction_and_one_release_call(
        ctx: Context, new_product: ProductFactory) -> None:
    pid, _ = await _deal(ctx, new_product, 25)
    placed = await _orders(ctx, pid, 25)
    paid, not_due, due = placed[:3], placed[3:5], placed[5:]
    await _make_due(ctx, [o.id for o in paid], paid=True)  # paid in time, worker lagging
    await _make_due(ctx, [o.id for o in due])
    recording = Recording(ctx.stock)
    assert await expire_due_orders(replace(ctx, stock=recording), 10_000) >= len(due)
    rows = await _rows(ctx, [o.id for o in placed])
    assert {(rows[o.id].status, rows[o.id].cancel_reason) for o in due} == {
        ("CANCELLED", "expired")}
    assert {rows[o.id].status for o in paid + not_due} == {"PENDING"}
    assert len({rows[o.id].updated_at for o in due}) == 1  # one transaction
    assert recording.release_calls == []
    assert len(recording.release_many_calls) == 1
    assert {(pid, o.id) for o in due} <= set(recording.release_many_calls[0])
    assert (await ctx.stock.peek(pid)).stock == len(due)
    for o in due:
        cancelled = dict(await _events(ctx, o.id))["OrderCancelled"]
        assert (cancelled["reason"], cancelled["stock_released_to"]) == ("expired", "redis")


async def test_an_expiry_never_cancels_an_order_paid_since_the_sweeper_chose_it(
        ctx: Context, new_product: ProductFactory) -> None:
    pid, _ = await _deal(ctx, new_product, 3)
    paid, unpaid = await _orders(ctx, pid, 2)
    await _make_due(ctx, [paid.id], paid=True)  # the webhook won the row lock first
    await _make_due(ctx, [unpaid.id])
    results = await settle_batch(ctx, [Cancel(paid.id, EXPIRED), Cancel(unpaid.id, EXPIRED)])
    assert [(r.outcome, r.status) for r in results] == [("no_change", "PENDING"),
                                                        ("applied", "CANCELLED")]
    # Nor does a buyer's cancel or a declined attempt applied late: the payment decides.
    assert (await settle_batch(ctx, [Cancel(paid.id, USER)]))[0].outcome == "no_change"
