"""The settlement port's contract: every case runs against the Postgres adapter and the
in-memory fake, so the fake the unit tier relies on cannot drift from the SQL (among them
"paid in time is never expired", stated once in each: db/settlement_rules.py and
usecases/settlement_plan.py)."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any, Protocol
from uuid import UUID

import pytest
from sqlalchemy import func, insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

from hotdeal_core.db.settlement import PostgresSettlement
from hotdeal_core.db.tables import hot_deals, orders, outbox, products
from hotdeal_core.domain import DealStatus, OrderStatus, StockBackend
from hotdeal_core.messaging.topics import Topics
from hotdeal_core.ports.settlement import PaymentFact, SettlementDb
from hotdeal_core.settings import Settings
from schemas.events import OrderCancelled
from tests.fakes.settlement import FakeSettlement
from tests.random_refs import random_name, random_user

SOON, PAST = timedelta(minutes=10), timedelta(seconds=-5)


class Rows(Protocol):
    """Seeding and reading the rows behind one implementation of the port."""

    @property
    def db(self) -> SettlementDb: ...

    async def product(self) -> int: ...
    async def deal(self, product_id: int, status: DealStatus,
                   backend: StockBackend = StockBackend.REDIS) -> int: ...
    async def order(self, product_id: int, deal_id: int | None, *, quantity: int = 1,
                    expires_in: timedelta = SOON, paid: bool = False) -> UUID: ...
    async def order_row(self, order_id: UUID) -> tuple[str, str | None, str | None, bool]: ...
    async def product_stock(self, product_id: int) -> int: ...
    async def deal_units(self, deal_id: int) -> tuple[int, int]: ...
    async def event_types(self, order_id: UUID) -> list[str]: ...


class PostgresRows:
    def __init__(self, engine: AsyncEngine, topics: Topics) -> None:
        self.engine, self.db = engine, PostgresSettlement(engine, topics)

    async def _insert(self, stmt: Any) -> Any:
        async with self.engine.begin() as conn:
            return (await conn.execute(stmt)).scalar_one()

    async def product(self) -> int:
        return int(await self._insert(insert(products).values(
            name=random_name(), price=700, stock=10).returning(products.c.id)))

    async def deal(self, product_id: int, status: DealStatus,
                   backend: StockBackend = StockBackend.REDIS) -> int:
        return int(await self._insert(insert(hot_deals).values(
            product_id=product_id, initial_stock=100, per_user_limit=5, status=status,
            stock_backend=backend).returning(hot_deals.c.id)))

    async def order(self, product_id: int, deal_id: int | None, *, quantity: int = 1,
                    expires_in: timedelta = SOON, paid: bool = False) -> UUID:
        now = func.now()
        return UUID(str(await self._insert(insert(orders).values(
            id=uuid.uuid4(), product_id=product_id, hot_deal_id=deal_id,
            user_id=random_user(), quantity=quantity, unit_price=700,
            status=OrderStatus.PENDING, expires_at=now + expires_in,
            paid_at=now if paid else None).returning(orders.c.id))))

    async def order_row(self, order_id: UUID) -> tuple[str, str | None, str | None, bool]:
        async with self.engine.connect() as conn:
            r = (await conn.execute(select(orders).where(orders.c.id == order_id))).one()
        return r.status, r.payment_id, r.cancel_reason, r.paid_at is not None

    async def product_stock(self, product_id: int) -> int:
        async with self.engine.connect() as conn:
            return int((await conn.execute(select(products.c.stock).where(
                products.c.id == product_id))).scalar_one())

    async def deal_units(self, deal_id: int) -> tuple[int, int]:
        async with self.engine.connect() as conn:
            r = (await conn.execute(select(hot_deals).where(hot_deals.c.id == deal_id))).one()
        return r.returned_stock, r.remaining_stock

    async def event_types(self, order_id: UUID) -> list[str]:
        async with self.engine.connect() as conn:
            return list((await conn.execute(select(outbox.c.event_type).where(
                outbox.c.key == str(order_id)).order_by(outbox.c.id))).scalars())


class FakeRows:
    def __init__(self) -> None:
        self.db = self.fake = FakeSettlement()
        self._products = iter(range(1, 10**6))

    async def product(self) -> int:
        return next(self._products)

    async def deal(self, product_id: int, status: DealStatus,
                   backend: StockBackend = StockBackend.REDIS) -> int:
        return self.fake.add_deal(status, backend)

    async def order(self, product_id: int, deal_id: int | None, *, quantity: int = 1,
                    expires_in: timedelta = SOON, paid: bool = False) -> UUID:
        return self.fake.add_order(product_id, deal_id, quantity=quantity,
                                   expires_in=expires_in, paid=paid)

    async def order_row(self, order_id: UUID) -> tuple[str, str | None, str | None, bool]:
        o = self.fake.tables.orders[order_id]
        return o.status, o.payment_id, o.cancel_reason, o.paid_at is not None

    async def product_stock(self, product_id: int) -> int:
        return self.fake.tables.product_stock[product_id]

    async def deal_units(self, deal_id: int) -> tuple[int, int]:
        d = self.fake.tables.deals[deal_id]
        return d.returned_stock, d.remaining_stock

    async def event_types(self, order_id: UUID) -> list[str]:
        return self.fake.event_types(order_id)


@pytest.fixture(params=["postgres", "fake"])
def rows(request: pytest.FixtureRequest, engine: AsyncEngine, settings: Settings) -> Rows:
    if request.param == "fake":
        return FakeRows()
    return PostgresRows(engine, Topics(settings.kafka_topic_prefix))


async def test_an_event_id_is_new_once_per_consumer(rows: Rows) -> None:
    a, b = uuid.uuid4(), uuid.uuid4()
    async with rows.db.transaction() as tx:
        assert await tx.record_first_times("c1", [b, a, a]) == {a, b}
    async with rows.db.transaction() as tx:
        fresh = uuid.uuid4()
        assert await tx.record_first_times("c1", [a, fresh]) == {fresh}
        assert await tx.record_first_times("c1", [a, b]) == set()
        assert await tx.record_first_times("c2", [a]) == {a}


async def test_locked_orders_carry_what_was_read_and_whether_they_were_paid_in_time(
        rows: Rows) -> None:
    pid = await rows.product()
    deal = await rows.deal(pid, DealStatus.ACTIVE)
    unpaid, paid = await rows.order(pid, deal), await rows.order(pid, deal, paid=True)
    async with rows.db.transaction() as tx:
        found = await tx.lock_orders([paid, unpaid, uuid.uuid4()])
    assert set(found) == {paid, unpaid}
    assert (found[paid].paid, found[unpaid].paid) == (True, False)
    assert found[unpaid].was == (OrderStatus.PENDING, None)
    assert (found[unpaid].deal_id, found[unpaid].product_id) == (deal, pid)


async def test_a_compare_and_set_moves_only_orders_still_as_they_were_read(
        rows: Rows) -> None:
    pid = await rows.product()
    first, second = await rows.order(pid, None), await rows.order(pid, None)
    async with rows.db.transaction() as tx:
        found = await tx.lock_orders([first, second])
        for o in found.values():
            o.status, o.payment_id = OrderStatus.CONFIRMED, "p1"
        found[second].was = (OrderStatus.CANCELLED, None)  # stale: not what the row holds
        assert await tx.cas_order_status(list(found.values())) == 1
    assert await rows.order_row(first) == (OrderStatus.CONFIRMED, "p1", None, False)
    assert (await rows.order_row(second))[0] == OrderStatus.PENDING


async def test_the_fence_reads_the_deals_of_the_given_orders_only(rows: Rows) -> None:
    p1, p2, p3 = [await rows.product() for _ in range(3)]
    d1 = await rows.deal(p1, DealStatus.ENDED)
    d2 = await rows.deal(p2, DealStatus.ACTIVE, StockBackend.DB)
    await rows.deal(p3, DealStatus.ACTIVE)
    orders_ = [await rows.order(p1, d1), await rows.order(p2, d2), await rows.order(p3, None)]
    async with rows.db.transaction() as tx:
        deals = await tx.fence_deals_of(orders_)
        assert await tx.fence_deals_of([]) == {}
    assert {d: (s.status, s.stock_backend) for d, s in deals.items()} == {
        d1: (DealStatus.ENDED, StockBackend.REDIS), d2: (DealStatus.ACTIVE, StockBackend.DB)}


async def test_units_given_back_land_on_the_product_and_the_deal(rows: Rows) -> None:
    pid = await rows.product()
    deal = await rows.deal(pid, DealStatus.RECONCILED)
    before = await rows.product_stock(pid)
    async with rows.db.transaction() as tx:
        await tx.give_back({pid: 3}, {deal: 2}, {deal: 1})
    assert await rows.product_stock(pid) - before == 3
    assert await rows.deal_units(deal) == (2, 1)


async def test_a_transaction_that_raises_writes_nothing(rows: Rows) -> None:
    pid = await rows.product()
    order, event = await rows.order(pid, None), uuid.uuid4()
    before = await rows.product_stock(pid)
    with pytest.raises(RuntimeError):
        async with rows.db.transaction() as tx:
            await tx.record_first_times("c1", [event])
            await tx.give_back({pid: 1}, {}, {})
            await tx.add_events([OrderCancelled(
                order_id=order, product_id=pid, hot_deal_id=None, user_id="u", quantity=1,
                reason="user_cancelled", stock_released_to="db")], claim=False)
            raise RuntimeError("the batch failed")
    assert await rows.product_stock(pid) == before and await rows.event_types(order) == []
    async with rows.db.transaction() as tx:
        assert await tx.record_first_times("c1", [event]) == {event}


async def test_events_are_written_to_the_outbox_keyed_by_order(rows: Rows) -> None:
    pid, order = await rows.product(), uuid.uuid4()
    async with rows.db.transaction() as tx:
        written = await tx.add_events([OrderCancelled(
            order_id=order, product_id=pid, hot_deal_id=None, user_id="u", quantity=1,
            reason="expired", stock_released_to="db")], claim=True, headers=[{"t": "1"}])
        assert await tx.add_events([], claim=False) == []
    assert [(r.key, r.headers) for r in written] == [(str(order), {"t": "1"})]
    assert await rows.event_types(order) == ["OrderCancelled"]


# "Paid in time is never expired": the one rule, in SQL and in Python, held together here.

async def test_a_payment_in_time_marks_only_pending_unpaid_orders_not_yet_expired(
        rows: Rows) -> None:
    pid = await rows.product()
    in_time = await rows.order(pid, None)
    late = await rows.order(pid, None, expires_in=PAST)
    settled = await rows.order(pid, None)
    async with rows.db.transaction() as tx:
        found = await tx.lock_orders([settled])
        found[settled].status = OrderStatus.CANCELLED
        found[settled].cancel_reason = "user_cancelled"
        await tx.cas_order_status([found[settled]])
    async with rows.db.transaction() as tx:
        await tx.mark_paid_in_time([in_time, late, settled, uuid.uuid4()])
    assert [(await rows.order_row(o))[3] for o in (in_time, late, settled)] == [
        True, False, False]


async def test_the_sweeper_claims_due_unpaid_orders_oldest_first_and_never_a_paid_one(
        rows: Rows) -> None:
    pid = await rows.product()
    older = await rows.order(pid, None, expires_in=PAST * 2)
    due = await rows.order(pid, None, expires_in=PAST)
    paid = await rows.order(pid, None, expires_in=PAST, paid=True)
    not_due = await rows.order(pid, None)
    claimed = await rows.db.claim_due_orders(100_000)
    assert older in claimed and due in claimed
    assert claimed.index(older) < claimed.index(due)
    assert paid not in claimed and not_due not in claimed
    async with rows.db.transaction() as tx:  # too late to be marked paid now
        await tx.mark_paid_in_time([due])
    assert due in await rows.db.claim_due_orders(100_000)


# Payments.

async def test_a_payment_fact_is_recorded_once_and_keeps_its_first_outcome(
        rows: Rows) -> None:
    pid = await rows.product()
    order, pay = await rows.order(pid, None, quantity=2), f"pay-{uuid.uuid4().hex}"
    fact = PaymentFact(pay, order, "succeeded", 1400, "accepted")
    async with rows.db.transaction() as tx:
        assert await tx.order_totals([order, uuid.uuid4()]) == {order: 1400}
        assert await tx.record_payment_facts([fact]) == {(pay, "succeeded")}
    async with rows.db.transaction() as tx:
        again = PaymentFact(pay, order, "succeeded", 1, "amount_mismatch")
        assert await tx.record_payment_facts([again]) == set()
        failed = PaymentFact(pay, order, "failed", 1400, "accepted")
        assert await tx.record_payment_facts([failed]) == {(pay, "failed")}
        assert await tx.first_outcomes([pay]) == {(pay, "succeeded"): "accepted",
                                                  (pay, "failed"): "accepted"}
