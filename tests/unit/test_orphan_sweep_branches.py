"""Every branch of the orphan sweep, on the in-memory stock store and orders port: which
due reservations are voided and released, forgotten, looked at later, or left alone."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime
from uuid import UUID, uuid4

from sqlalchemy.ext.asyncio import create_async_engine

from hotdeal_core.domain import CancelReason, OrderStatus
from hotdeal_core.ports.orders import OrderState
from hotdeal_core.settings import Settings
from hotdeal_core.stock.fake import FakeStockStore
from hotdeal_core.usecases.context import Context
from hotdeal_core.usecases.orphans import release_orphans
from hotdeal_core.usecases.views import OrderView
from tests.fakes.orders import FakeOrders
from tests.random_refs import random_user

GRACE_S = 5
T0_MS = 1_700_000_000_000  # the store's clock at the reservations


class LateWriteOrders(FakeOrders):
    """The API's order write lands between the sweep's read and its void."""

    async def order_states(self, order_ids: list[UUID]) -> dict[UUID, OrderState]:
        states = await super().order_states(order_ids)
        for order_id in order_ids:
            if order_id not in states:
                self.orders[order_id] = _order(order_id, OrderStatus.PENDING)
        return states


@dataclass
class Sweep:
    ctx: Context
    stock: FakeStockStore
    db: FakeOrders
    now_ms: list[int]
    pid: int = 0
    deal_id: int = 0


def _order(order_id: UUID, status: str, expires_ms: int = T0_MS) -> OrderView:
    at = datetime.fromtimestamp(expires_ms / 1000, UTC)
    return OrderView(order_id, 1, 1, "someone", 1, 100, status, None, at, at, at)


async def _sweep(settings: Settings, db: FakeOrders | None = None) -> Sweep:
    now_ms = [T0_MS]
    stock = FakeStockStore(lambda: now_ms[0])
    db = db or FakeOrders()
    engine = create_async_engine("postgresql+asyncpg://unused@127.0.0.1:1/unused")
    s = Sweep(Context(engine=engine, stock=stock, settings=settings, orders_db=db),
              stock, db, now_ms)
    s.pid = await db.create_product("hot", 100, 0)
    s.deal_id = db.add_deal(s.pid, 10, 10)
    await stock.open(s.pid, s.deal_id, 10, 10, epoch=1, unit_price=100)
    return s


async def _reserved(s: Sweep, quantity: int = 1) -> UUID:
    order_id = uuid4()
    await s.stock.reserve(s.pid, order_id, random_user(), quantity, None)
    return order_id


async def _left(s: Sweep) -> int | None:
    return (await s.stock.peek(s.pid)).stock


async def test_a_reservation_without_its_order_is_voided_then_released(
        settings: Settings) -> None:
    s = await _sweep(settings)
    orphan = await _reserved(s, 3)
    s.now_ms[0] += GRACE_S * 1000
    sweep = await release_orphans(s.ctx, GRACE_S)
    assert (sweep.released, sweep.examined, sweep.more) == (3, 1, False)
    voided = s.db.orders[orphan]
    assert (voided.status, voided.cancel_reason) == (OrderStatus.CANCELLED,
                                                     CancelReason.ORPHANED)
    assert await _left(s) == 10


async def test_a_reservation_inside_its_grace_period_is_not_looked_at(
        settings: Settings) -> None:
    s = await _sweep(settings)
    await _reserved(s)
    s.now_ms[0] += GRACE_S * 1000 - 1
    assert (await release_orphans(s.ctx, GRACE_S)).examined == 0
    assert not s.db.orders and await _left(s) == 9


async def test_an_order_written_after_the_read_is_not_voided_and_keeps_its_units(
        settings: Settings) -> None:
    s = await _sweep(settings, LateWriteOrders())
    order_id = await _reserved(s)
    s.now_ms[0] += GRACE_S * 1000
    assert (await release_orphans(s.ctx, GRACE_S)).released == 0
    assert s.db.orders[order_id].status == OrderStatus.PENDING and await _left(s) == 9


async def test_a_pending_orders_reservation_is_due_again_only_after_its_expiry(
        settings: Settings) -> None:
    s = await _sweep(settings)
    order_id = await _reserved(s)
    expires_ms = T0_MS + 60_000
    s.db.orders[order_id] = _order(order_id, OrderStatus.PENDING, expires_ms)
    s.now_ms[0] += GRACE_S * 1000
    assert (await release_orphans(s.ctx, GRACE_S)).released == 0
    assert s.stock.deals[s.pid].since[order_id] == expires_ms
    s.now_ms[0] = expires_ms + GRACE_S * 1000 - 1
    assert (await release_orphans(s.ctx, GRACE_S)).examined == 0
    assert await _left(s) == 9


async def test_a_confirmed_orders_reservation_is_forgotten_and_its_units_stay_sold(
        settings: Settings) -> None:
    s = await _sweep(settings)
    order_id = await _reserved(s)
    s.db.orders[order_id] = _order(order_id, OrderStatus.CONFIRMED)
    s.now_ms[0] += GRACE_S * 1000
    assert (await release_orphans(s.ctx, GRACE_S)).released == 0
    assert order_id not in s.stock.deals[s.pid].res and await _left(s) == 9


async def test_a_cancelled_orders_reservation_is_released(settings: Settings) -> None:
    s = await _sweep(settings)
    order_id = await _reserved(s, 2)
    s.db.orders[order_id] = _order(order_id, OrderStatus.CANCELLED)
    s.now_ms[0] += GRACE_S * 1000
    assert (await release_orphans(s.ctx, GRACE_S)).released == 2
    assert await _left(s) == 10


async def test_redis_state_of_another_deal_is_left_alone(settings: Settings) -> None:
    s = await _sweep(settings)
    await _reserved(s)
    s.db.deals[s.deal_id] = replace(s.db.deals[s.deal_id], id=s.deal_id + 1)
    s.db.deals[s.deal_id + 1] = s.db.deals.pop(s.deal_id)  # Postgres's deal is another
    s.now_ms[0] += GRACE_S * 1000
    assert (await release_orphans(s.ctx, GRACE_S)).examined == 0
    assert not s.db.orders and await _left(s) == 9


async def test_a_full_batch_asks_for_another_sweep_at_once(settings: Settings) -> None:
    s = await _sweep(settings)
    for _ in range(3):
        await _reserved(s)
    s.now_ms[0] += GRACE_S * 1000
    first = await release_orphans(s.ctx, GRACE_S, batch=2)
    assert (first.released, first.more) == (2, True)
    second = await release_orphans(s.ctx, GRACE_S, batch=2)
    assert (second.released, second.more) == (1, False)
