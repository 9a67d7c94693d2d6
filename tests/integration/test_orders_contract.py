"""The orders port's contract: every case runs against the Postgres adapter and the
in-memory fake, so the fake the unit tier relies on cannot drift from the SQL."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Protocol

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from hotdeal_core.db.orders import PostgresOrders
from hotdeal_core.domain import CancelReason, DealStatus, OrderStatus, StockBackend
from hotdeal_core.messaging.outbox import OutboxRow
from hotdeal_core.messaging.topics import Topics
from hotdeal_core.ports.orders import (
    Fenced,
    NewOrder,
    NotWritten,
    OrdersDb,
    ReservedOrder,
    Taken,
)
from schemas.events import OrderCancellationRequested
from tests.fakes.orders import FakeOrders, outbox_json
from tests.random_refs import random_name, random_user

TTL = 600


class World(Protocol):
    """The port, and what a test sets up or inspects beside it."""

    db: OrdersDb

    async def add_deal(self, product_id: int, stock: int, limit: int, *,
                       backend: str = StockBackend.REDIS,
                       status: str = DealStatus.ACTIVE) -> int: ...
    async def set_deal(self, deal_id: int, *, status: str | None = None,
                       epoch: int | None = None) -> None: ...
    async def remaining(self, deal_id: int) -> int: ...
    async def event_types(self, key: str) -> list[str]: ...


class PostgresWorld:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.db: OrdersDb = PostgresOrders(engine, Topics("contract."))

    async def add_deal(self, product_id: int, stock: int, limit: int, *,
                       backend: str = StockBackend.REDIS,
                       status: str = DealStatus.ACTIVE) -> int:
        async with self.engine.begin() as conn:
            return int((await conn.execute(text(
                "INSERT INTO hot_deals (product_id, initial_stock, per_user_limit, status, "
                "stock_backend, remaining_stock) VALUES (:p, :s, :l, :st, :b, :r) RETURNING id"),
                {"p": product_id, "s": stock, "l": limit, "st": status, "b": backend,
                 "r": stock if backend == StockBackend.DB else 0}))
                .scalar_one())

    async def set_deal(self, deal_id: int, *, status: str | None = None,
                       epoch: int | None = None) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(text(
                "UPDATE hot_deals SET status = coalesce(CAST(:st AS text), status), "
                "epoch = coalesce(CAST(:e AS int), epoch) WHERE id = :d"),
                {"st": status, "e": epoch, "d": deal_id})

    async def remaining(self, deal_id: int) -> int:
        async with self.engine.connect() as conn:
            return int((await conn.execute(text(
                "SELECT remaining_stock FROM hot_deals WHERE id = :d"), {"d": deal_id}))
                .scalar_one())

    async def event_types(self, key: str) -> list[str]:
        async with self.engine.connect() as conn:
            return list((await conn.execute(text(
                "SELECT event_type FROM outbox WHERE key = :k ORDER BY id"), {"k": key}))
                .scalars())


class FakeWorld:
    def __init__(self) -> None:
        self.fake = FakeOrders(Topics("contract."))
        self.db: OrdersDb = self.fake

    async def add_deal(self, product_id: int, stock: int, limit: int, *,
                       backend: str = StockBackend.REDIS,
                       status: str = DealStatus.ACTIVE) -> int:
        deal_id = self.fake.add_deal(product_id, stock, limit, backend=backend, status=status)
        if backend == StockBackend.REDIS:
            self.fake.deals[deal_id].remaining_stock = 0
        return deal_id

    async def set_deal(self, deal_id: int, *, status: str | None = None,
                       epoch: int | None = None) -> None:
        deal = self.fake.deals[deal_id]
        deal.status = status or deal.status
        deal.epoch = epoch or deal.epoch

    async def remaining(self, deal_id: int) -> int:
        return self.fake.deals[deal_id].remaining_stock

    async def event_types(self, key: str) -> list[str]:
        return [e.type for e in self.fake.events_of(key)]


@pytest.fixture(params=["postgres", "fake"])
async def world(request: pytest.FixtureRequest, engine: AsyncEngine) -> AsyncIterator[World]:
    w: World = PostgresWorld(engine) if request.param == "postgres" else FakeWorld()
    yield w


async def _product(w: World, stock: int = 0, price: int = 250) -> int:
    return await w.db.create_product(random_name(), price, stock)


def _reserved(pid: int, deal_id: int, epoch: int = 1, key: str | None = None,
              order_id: uuid.UUID | None = None, user: str | None = None) -> ReservedOrder:
    return ReservedOrder(order_id or uuid.uuid4(), pid, deal_id, epoch, user or random_user(),
                         2, 250, key, TTL, "contract.orders.v1", {"traceparent": "00-x"})


def _new(pid: int, quantity: int = 1, key: str | None = None,
         user: str | None = None) -> NewOrder:
    return NewOrder(uuid.uuid4(), pid, user or random_user(), quantity, key, TTL)


# The group commit

async def test_a_group_commit_writes_live_orders_pending_with_their_born_claimed_events(
        world: World) -> None:
    pid = await _product(world)
    deal_id = await world.add_deal(pid, 10, 5)
    items = [_reserved(pid, deal_id), _reserved(pid, deal_id, key="k")]
    handed: list[OutboxRow] = []
    outcomes = await world.db.write_reserved_orders(items, handed.extend)
    for item, order in zip(items, outcomes, strict=True):
        assert not isinstance(order, BaseException)
        assert (order.id, order.status, order.total) == (item.order_id, OrderStatus.PENDING, 500)
        assert order.expires_at - order.created_at == timedelta(seconds=TTL)
        assert await world.db.order(item.order_id) == order
        assert await world.event_types(str(item.order_id)) == ["OrderPlaced"]
    assert sorted(r.key for r in handed) == sorted(str(i.order_id) for i in items)
    assert {outbox_json(r)["order_id"] for r in handed} == {str(i.order_id) for i in items}
    assert all(r.headers == {"traceparent": "00-x"} for r in handed)


@pytest.mark.parametrize("change", ["ended", "rebuilt"])
async def test_a_group_commit_fences_orders_of_a_deal_no_longer_active_at_their_epoch(
        world: World, change: str) -> None:
    pid = await _product(world)
    deal_id = await world.add_deal(pid, 10, 5)
    if change == "ended":
        await world.set_deal(deal_id, status=DealStatus.ENDED)
    else:
        await world.set_deal(deal_id, epoch=2)
    item = _reserved(pid, deal_id)
    outcome, = await world.db.write_reserved_orders([item], None)
    assert isinstance(outcome, Fenced)
    assert await world.db.order(item.order_id) is None
    assert await world.event_types(str(item.order_id)) == []


async def test_a_group_commit_does_not_write_an_order_whose_id_or_key_is_taken(
        world: World) -> None:
    pid = await _product(world)
    deal_id = await world.add_deal(pid, 10, 5)
    buyer = random_user()
    first = _reserved(pid, deal_id, key="k", user=buyer)
    assert not isinstance((await world.db.write_reserved_orders([first], None))[0],
                          BaseException)
    same_id = _reserved(pid, deal_id, order_id=first.order_id)
    same_key = _reserved(pid, deal_id, key="k", user=buyer)
    fresh = _reserved(pid, deal_id, key="k")  # the same key, another buyer
    outcomes = await world.db.write_reserved_orders([same_id, same_key, fresh], None)
    assert [type(o) for o in outcomes[:2]] == [NotWritten, NotWritten]
    assert not isinstance(outcomes[2], BaseException)
    assert await world.event_types(str(first.order_id)) == ["OrderPlaced"]
    assert await world.db.order(same_key.order_id) is None


# Stock taken in Postgres

async def test_an_ordinary_product_gives_its_stock_until_sold_out(world: World) -> None:
    pid = await _product(world, stock=3)
    placed = await world.db.take_stock_and_place(_new(pid, 2))
    assert placed.outcome is Taken.PLACED and placed.order is not None
    assert placed.order.hot_deal_id is None and placed.order.total == 500
    assert await world.event_types(str(placed.order.id)) == ["OrderPlaced"]
    sold = await world.db.take_stock_and_place(_new(pid, 2))
    assert sold.outcome is Taken.SOLD_OUT
    found = await world.db.product(pid)
    assert found is not None and found[0].stock == 1 and found[1] is None


async def test_a_db_deal_gives_its_hot_rows_stock_within_the_per_user_limit(
        world: World) -> None:
    pid = await _product(world)
    deal_id = await world.add_deal(pid, 5, 2, backend=StockBackend.DB)
    buyer = random_user()
    placed = await world.db.take_stock_and_place(_new(pid, 2, user=buyer))
    assert placed.outcome is Taken.PLACED and placed.order is not None
    assert placed.order.hot_deal_id == deal_id
    over = await world.db.take_stock_and_place(_new(pid, 1, user=buyer))
    assert (over.outcome, over.limit, over.held) == (Taken.LIMIT_EXCEEDED, 2, 2)
    assert await world.remaining(deal_id) == 3  # the refused order took nothing
    sold = await world.db.take_stock_and_place(_new(pid, 4))
    assert sold.outcome is Taken.SOLD_OUT and await world.remaining(deal_id) == 3


async def test_a_keyed_retry_is_replayed_and_takes_no_more_stock(world: World) -> None:
    pid = await _product(world, stock=5)
    buyer = random_user()
    first = await world.db.take_stock_and_place(_new(pid, 1, "k", buyer))
    again = await world.db.take_stock_and_place(_new(pid, 1, "k", buyer))
    assert again.outcome is Taken.REPLAYED and again.order == first.order
    assert await world.db.order_by_key(buyer, "k") == first.order
    found = await world.db.product(pid)
    assert found is not None and found[0].stock == 4


@pytest.mark.parametrize("case", ["redis-deal", "scheduled", "no-product"])
async def test_postgres_refuses_what_it_cannot_sell(world: World, case: str) -> None:
    pid = await _product(world, stock=5)
    if case == "redis-deal":
        await world.add_deal(pid, 5, 5)
    elif case == "scheduled":
        await world.add_deal(pid, 5, 5, backend=StockBackend.DB,
                             status=DealStatus.SCHEDULED)
    answer = await world.db.take_stock_and_place(
        _new(pid + 10**9 if case == "no-product" else pid))
    assert answer.outcome is (Taken.NO_PRODUCT if case == "no-product" else Taken.NOT_ACTIVE)


# Reads, requests, products, the orphan sweep

async def test_unknown_orders_and_products_read_as_none(world: World) -> None:
    assert await world.db.order(uuid.uuid4()) is None
    assert await world.db.order_by_key(random_user(), "k") is None
    assert await world.db.product(await _product(world) + 10**9) is None


async def test_a_request_event_is_recorded_under_its_order(world: World) -> None:
    order_id = uuid.uuid4()
    await world.db.add_event(OrderCancellationRequested(order_id=order_id))
    assert await world.event_types(str(order_id)) == ["OrderCancellationRequested"]


async def test_a_product_is_read_with_its_live_deal(world: World) -> None:
    pid = await _product(world, stock=7, price=99)
    deal_id = await world.add_deal(pid, 5, 2, backend=StockBackend.DB)
    found = await world.db.product(pid)
    assert found is not None
    product, deal = found
    assert (product.id, product.price, product.stock) == (pid, 99, 7)
    assert deal is not None and (deal.id, deal.status, deal.remaining_stock,
                                 deal.per_user_limit) == (deal_id, DealStatus.ACTIVE, 5, 2)


async def test_the_sweep_sees_active_redis_deals_and_voids_an_orphan_once(
        world: World) -> None:
    pid = await _product(world)
    deal_id = await world.add_deal(pid, 10, 5)
    other = await _product(world)
    await world.add_deal(other, 10, 5, backend=StockBackend.DB)
    live = await world.db.live_redis_deals()
    assert (deal_id, pid) in live and all(p != other for _, p in live)
    orphan, buyer = uuid.uuid4(), random_user()
    assert await world.db.void_orphan(deal_id, pid, orphan, buyer, 2)
    assert not await world.db.void_orphan(deal_id, pid, orphan, buyer, 2)
    voided = await world.db.order(orphan)
    assert voided is not None and (voided.status, voided.cancel_reason, voided.total) == (
        OrderStatus.CANCELLED, CancelReason.ORPHANED, 500)
    written = _reserved(pid, deal_id)
    outcome, = await world.db.write_reserved_orders([written], None)
    assert not isinstance(outcome, BaseException)
    assert not await world.db.void_orphan(deal_id, pid, written.order_id, buyer, 2)
    states = await world.db.order_states([orphan, written.order_id, uuid.uuid4()])
    assert {k: v.status for k, v in states.items()} == {
        orphan: OrderStatus.CANCELLED, written.order_id: OrderStatus.PENDING}
    assert states[written.order_id].expires_at == outcome.expires_at
