"""What place_order does with its reservation when the order's write fails: a write known
not to have landed gives the units back at once; one that may have landed (the commit cut
off, the writer stopped mid-write) keeps them, for the orphan sweep to settle from Postgres."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable

import pytest
from sqlalchemy.ext.asyncio import create_async_engine

from hotdeal_core.batching import Batcher, OutcomeUnknown
from hotdeal_core.errors import DependencyUnavailable
from hotdeal_core.ports.orders import CommitUnknown, ReservedOrder
from hotdeal_core.settings import Settings
from hotdeal_core.stock.fake import FakeStockStore
from hotdeal_core.usecases.context import Context
from hotdeal_core.usecases.orders import PlaceOrder, place_order
from hotdeal_core.usecases.views import OrderView
from tests.random_refs import random_user

PID = 7
WriteOrders = Callable[[list[ReservedOrder]], Awaitable[list[OrderView | BaseException]]]


async def _ctx(settings: Settings, write: WriteOrders, stop_timeout: float = 10.0,
               ) -> tuple[Context, FakeStockStore]:
    store = FakeStockStore()
    await store.open(PID, deal_id=1, stock=5, per_user_limit=5, epoch=1, unit_price=100)
    engine = create_async_engine("postgresql+asyncpg://nobody@127.0.0.1:1/never-connected")
    writer: Batcher[ReservedOrder, OrderView] = Batcher("orders", write,
                                                        stop_timeout=stop_timeout)
    return Context(engine=engine, stock=store, settings=settings, order_writer=writer), store


async def _held(store: FakeStockStore) -> int:
    return (await store.snapshot(PID)).reserved_units


async def test_an_order_whose_commit_was_cut_off_keeps_its_reservation(
        settings: Settings) -> None:
    async def commit_cut_off(items: list[ReservedOrder]) -> list[OrderView | BaseException]:
        raise CommitUnknown()

    ctx, store = await _ctx(settings, commit_cut_off)
    assert ctx.order_writer is not None
    ctx.order_writer.start()
    try:
        with pytest.raises(OutcomeUnknown) as unknown:
            await place_order(ctx, PlaceOrder(PID, random_user(), 2))
    finally:
        await ctx.order_writer.stop()
    assert unknown.value.http_status == 503 and unknown.value.retriable
    assert await _held(store) == 2


async def test_an_order_whose_writer_stopped_mid_write_keeps_its_reservation(
        settings: Settings) -> None:
    started = asyncio.Event()

    async def never_ends(items: list[ReservedOrder]) -> list[OrderView | BaseException]:
        started.set()
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    ctx, store = await _ctx(settings, never_ends, stop_timeout=0)
    assert ctx.order_writer is not None
    ctx.order_writer.start()
    buyer = asyncio.ensure_future(place_order(ctx, PlaceOrder(PID, random_user(), 1)))
    await asyncio.wait_for(started.wait(), 5)
    await asyncio.wait_for(ctx.order_writer.stop(), 5)  # shutdown, past its bound
    with pytest.raises(OutcomeUnknown):
        await asyncio.wait_for(buyer, 5)
    assert await _held(store) == 1


async def test_an_order_refused_before_its_commit_gives_its_reservation_back(
        settings: Settings) -> None:
    async def refused(items: list[ReservedOrder]) -> list[OrderView | BaseException]:
        raise DependencyUnavailable("postgres", "connection refused")

    ctx, store = await _ctx(settings, refused)
    assert ctx.order_writer is not None
    ctx.order_writer.start()
    try:
        with pytest.raises(DependencyUnavailable) as failed:
            await place_order(ctx, PlaceOrder(PID, random_user(), 2, f"key-{uuid.uuid4()}"))
    finally:
        await ctx.order_writer.stop()
    assert not isinstance(failed.value, OutcomeUnknown)
    assert await _held(store) == 0 and (await store.peek(PID)).stock == 5
