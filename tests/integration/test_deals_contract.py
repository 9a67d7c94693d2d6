"""The deals port's contract: every case runs against the Postgres adapter and the in-memory
fake, so the fake the unit tier relies on cannot drift from the SQL."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from datetime import timedelta
from uuid import UUID

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from hotdeal_core.db.deals import PgDeals
from hotdeal_core.domain import DealStatus, OrderStatus, StockBackend
from hotdeal_core.errors import Conflict, NotFound
from hotdeal_core.ports.deals import DealsDb, NewDeal, Reconciliation
from hotdeal_core.usecases.context import Context
from hotdeal_core.usecases.products import create_product
from tests.fakes.deals import FakeDeals
from tests.random_refs import random_name, random_user


class _Boom(Exception):
    pass


@dataclass
class Books:
    """A backend and the means to arrange its data and read what it wrote."""

    db: DealsDb
    ctx: Context | None = None  # Postgres: the test database; None: the fake

    @property
    def fake(self) -> FakeDeals:
        assert isinstance(self.db, FakeDeals)
        return self.db

    async def product(self, stock: int, price: int = 1000) -> int:
        if self.ctx is None:
            return self.fake.add_product(stock, price)
        return (await create_product(self.ctx, random_name(), price, stock)).id

    async def product_stock(self, product_id: int) -> int:
        if self.ctx is None:
            return self.fake.products[product_id].stock
        return await self._one("SELECT stock FROM products WHERE id = :p", p=product_id)

    async def order(self, deal_id: int, quantity: int = 1,
                    status: OrderStatus = OrderStatus.PENDING, user_id: str | None = None,
                    key: str | None = None) -> UUID:
        user_id = user_id or random_user()
        if self.ctx is None:
            return self.fake.add_order(deal_id, quantity, status, user_id, key)
        order_id = uuid.uuid4()
        await self._run(
            "INSERT INTO orders (id, product_id, hot_deal_id, user_id, quantity, unit_price, "
            "status, cancel_reason, idempotency_key, expires_at) SELECT :id, product_id, id, "
            ":u, :q, 1000, :s, :reason, :k, "
            "now() + interval '15 minutes' FROM hot_deals WHERE id = :d",
            id=order_id, u=user_id, q=quantity, s=status.value, k=key, d=deal_id,
            reason="user_cancelled" if status is OrderStatus.CANCELLED else None)
        return order_id

    async def make_due(self, deal_id: int) -> None:
        """The deal's end is one second past."""
        if self.ctx is None:
            self.fake.update(deal_id, ends_at=self.fake.now() - _second)
        else:
            await self._run("UPDATE hot_deals SET ends_at = now() - interval '1 second' "
                            "WHERE id = :d", d=deal_id)

    async def ended_ago(self, deal_id: int, seconds: int) -> None:
        if self.ctx is None:
            self.fake.ended_at[deal_id] = self.fake.now() - seconds * _second
        else:
            await self._run("UPDATE hot_deals SET ended_at = now() - make_interval(secs => :s)"
                            " WHERE id = :d", s=seconds, d=deal_id)

    async def event_types(self, deal_id: int) -> list[str]:
        if self.ctx is None:
            return self.fake.event_types(deal_id)
        async with self.ctx.engine.connect() as conn:
            return list((await conn.execute(text(
                "SELECT event_type FROM outbox WHERE payload->>'hot_deal_id' = :d ORDER BY id"),
                {"d": str(deal_id)})).scalars())

    async def _one(self, sql: str, **params: object) -> int:
        assert self.ctx is not None
        async with self.ctx.engine.connect() as conn:
            return int((await conn.execute(text(sql), params)).scalar_one())

    async def _run(self, sql: str, **params: object) -> None:
        assert self.ctx is not None
        async with self.ctx.engine.begin() as conn:
            await conn.execute(text(sql), params)


_second = timedelta(seconds=1)


@pytest.fixture(params=["postgres", "fake"])
def books(request: pytest.FixtureRequest, ctx: Context, engine: AsyncEngine) -> Books:
    if request.param == "fake":
        return Books(FakeDeals())
    return Books(PgDeals(engine, ctx.topics), ctx)


async def _opened(books: Books, stock: int = 10, product_stock: int = 100,
                  backend: StockBackend = StockBackend.REDIS,
                  duration: float | None = None) -> tuple[int, int]:
    pid = await books.product(product_stock, price=700)
    opened = await books.db.open_deal(NewDeal(pid, stock, 2, backend, duration))
    return pid, opened.deal_id


async def test_opening_a_deal_moves_units_from_the_product_and_writes_hot_deal_started(
        books: Books) -> None:
    pid = await books.product(100, price=700)
    opened = await books.db.open_deal(NewDeal(pid, 30, 2, StockBackend.DB, 60))
    assert opened.unit_price == 700 and opened.ends_at is not None
    deal = await books.db.deal(opened.deal_id)
    assert (deal.status, deal.stock_backend, deal.initial_stock, deal.remaining_stock,
            deal.epoch) == (DealStatus.ACTIVE, StockBackend.DB, 30, 30, 1)
    assert await books.db.live_deal(pid) == deal
    assert await books.product_stock(pid) == 70
    assert await books.event_types(opened.deal_id) == ["HotDealStarted"]


async def test_a_deal_without_a_duration_never_ends_by_itself(books: Books) -> None:
    _, deal_id = await _opened(books)
    assert (await books.db.deal(deal_id)).ends_at is None
    assert deal_id not in {d.id for d in await books.db.due_deals()}


async def test_opening_is_refused_for_a_missing_product_a_live_deal_or_too_little_stock(
        books: Books) -> None:
    with pytest.raises(NotFound) as missing:
        await books.db.open_deal(NewDeal(10**12, 1, 1, StockBackend.REDIS, None))
    pid, _ = await _opened(books, stock=10, product_stock=15)
    with pytest.raises(Conflict) as live:
        await books.db.open_deal(NewDeal(pid, 1, 1, StockBackend.REDIS, None))
    other = await books.product(5)
    with pytest.raises(Conflict) as short:
        await books.db.open_deal(NewDeal(other, 6, 1, StockBackend.REDIS, None))
    assert (missing.value.code, live.value.code, short.value.code) == (
        "product_not_found", "deal_already_active", "insufficient_stock")
    assert (await books.product_stock(pid), await books.product_stock(other)) == (5, 5)
    assert await books.db.live_deal(other) is None


async def test_marking_ended_is_a_compare_and_set_with_one_hot_deal_ended(books: Books) -> None:
    _, deal_id = await _opened(books)
    deal = await books.db.deal(deal_id)
    assert await books.db.mark_ended(deal, "duration_over") is True
    assert await books.db.mark_ended(deal, "stopped") is False
    assert (await books.db.deal(deal_id)).status is DealStatus.ENDED
    assert await books.event_types(deal_id) == ["HotDealStarted", "HotDealEnded"]


async def test_due_deals_are_the_active_ones_past_their_end(books: Books) -> None:
    _, due = await _opened(books, duration=3600)
    _, later = await _opened(books, duration=3600)
    _, ended = await _opened(books, duration=3600)
    for deal_id in (due, ended):
        await books.make_due(deal_id)
    await books.db.mark_ended(await books.db.deal(ended), "stopped")
    found = {d.id for d in await books.db.due_deals()}
    assert due in found and later not in found and ended not in found


async def test_stuck_deals_are_the_ones_ended_longer_ago_than_asked(books: Books) -> None:
    _, stuck = await _opened(books)
    _, recent = await _opened(books)
    _, active = await _opened(books)
    for deal_id in (stuck, recent):
        await books.db.mark_ended(await books.db.deal(deal_id), "stopped")
    await books.ended_ago(stuck, 60)
    found = set(await books.db.stuck_deal_ids(30))
    assert stuck in found and recent not in found and active not in found


async def test_order_units_are_read_by_status(books: Books) -> None:
    _, deal_id = await _opened(books)
    pending = await books.order(deal_id, 2)
    confirmed = await books.order(deal_id, 1, OrderStatus.CONFIRMED)
    cancelled = await books.order(deal_id, 3, OrderStatus.CANCELLED)
    deal, units = await books.db.deal_and_units(deal_id)
    assert deal.id == deal_id
    assert units == {OrderStatus.PENDING: 2, OrderStatus.CONFIRMED: 1, OrderStatus.CANCELLED: 3}
    assert await books.db.sold_units(deal_id) == 3
    unknown = uuid.uuid4()
    assert await books.db.order_statuses([pending, confirmed, cancelled, unknown]) == {
        pending: OrderStatus.PENDING, confirmed: OrderStatus.CONFIRMED,
        cancelled: OrderStatus.CANCELLED}
    assert await books.db.order_statuses([]) == {}


async def test_an_unknown_deal_is_not_found(books: Books) -> None:
    with pytest.raises(NotFound) as missing:
        await books.db.deal(10**12)
    assert missing.value.code == "deal_not_found"
    assert await books.db.deal_status(10**12) is None
    assert await books.db.latest_deal_id(await books.product(1)) is None


async def test_the_lists_of_live_and_active_redis_deals(books: Books) -> None:
    _, redis_deal = await _opened(books)
    _, db_deal = await _opened(books, backend=StockBackend.DB)
    _, ended = await _opened(books)
    await books.db.mark_ended(await books.db.deal(ended), "stopped")
    live = set(await books.db.live_deal_ids())
    active_redis = {d.id for d in await books.db.active_redis_deals()}
    assert {redis_deal, db_deal, ended} <= live
    assert redis_deal in active_redis and not {db_deal, ended} & active_redis


async def test_a_locked_deal_reads_its_live_orders_and_price(books: Books) -> None:
    _, deal_id = await _opened(books)
    user = random_user()
    pending = await books.order(deal_id, 2, user_id=user, key="k1")
    confirmed = await books.order(deal_id, 1, OrderStatus.CONFIRMED)
    await books.order(deal_id, 1, OrderStatus.CANCELLED)
    async with books.db.locked(deal_id) as locked:
        assert locked.deal.id == deal_id and await locked.unit_price() == 700
        orders = {o.id: o for o in await locked.live_orders()}
        assert (await locked.units_by_status())[OrderStatus.PENDING] == 2
        assert await locked.order_statuses([pending]) == {pending: OrderStatus.PENDING}
    assert set(orders) == {pending, confirmed}
    assert (orders[pending].user_id, orders[pending].quantity, orders[pending].status,
            orders[pending].idempotency_key) == (user, 2, OrderStatus.PENDING, "k1")


async def test_an_epoch_set_under_the_lock_commits_with_a_clean_exit_only(books: Books) -> None:
    _, deal_id = await _opened(books)
    with pytest.raises(_Boom):
        async with books.db.locked(deal_id) as locked:
            await locked.set_epoch(5)
            raise _Boom
    assert (await books.db.deal(deal_id)).epoch == 1
    async with books.db.locked(deal_id) as locked:
        await locked.set_epoch(5)
    assert (await books.db.deal(deal_id)).epoch == 5


async def test_reconciling_gives_units_back_once_and_stores_the_figures(books: Books) -> None:
    pid, deal_id = await _opened(books, stock=10, product_stock=100)
    await books.db.mark_ended(await books.db.deal(deal_id), "stopped")
    rec = Reconciliation(10, 7, 1, 0, 8, 1, 1, True)
    async with books.db.locked(deal_id) as locked:
        await locked.reconcile(rec)
    deal = await books.db.deal(deal_id)
    assert (deal.status, deal.returned_stock) == (DealStatus.RECONCILED, 8)
    assert await books.product_stock(pid) == 98
    assert await books.db.live_deal(pid) is None
    assert await books.db.latest_deal_id(pid) == deal_id
    async with books.db.locked(deal_id) as locked:
        assert await locked.reconciliation() == rec
    assert await books.event_types(deal_id) == [
        "HotDealStarted", "HotDealEnded", "HotDealReconciled"]


async def test_a_locked_deal_is_locked_for_a_second_locker_until_the_first_ends(
        books: Books) -> None:
    _, deal_id = await _opened(books)
    entered = asyncio.Event()

    async def second() -> None:
        async with books.db.locked(deal_id):
            entered.set()
    async with books.db.locked(deal_id):
        task = asyncio.create_task(second())
        with pytest.raises(TimeoutError):  # a bounded look: it must still be waiting
            await asyncio.wait_for(asyncio.shield(entered.wait()), 0.3)
    await asyncio.wait_for(task, 10)
    assert entered.is_set()
