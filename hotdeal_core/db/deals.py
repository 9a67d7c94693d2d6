"""The deals port over Postgres: each rule one named function, `PgDeals` the adapter."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from uuid import UUID

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from hotdeal_core.db.books import (
    DEAL_COLUMNS,
    as_deal,
    deal_row,
    give_back_to_product,
    order_statuses,
    units_by_status,
)
from hotdeal_core.db.tables import hot_deals, orders, products, reconciliations
from hotdeal_core.domain import LIVE_DEAL_STATUSES, DealStatus, OrderStatus, StockBackend
from hotdeal_core.errors import Conflict, NotFound
from hotdeal_core.messaging.outbox import add_event
from hotdeal_core.messaging.topics import Topics
from hotdeal_core.ports.deals import (
    Deal,
    EndReason,
    LiveOrder,
    NewDeal,
    OpenedDeal,
    Reconciliation,
)
from schemas.events import HotDealEnded, HotDealReconciled, HotDealStarted

_SOLD = (OrderStatus.PENDING, OrderStatus.CONFIRMED)


async def deals_where(conn: AsyncConnection, *where: ColumnElement[bool]) -> list[Deal]:
    rows = (await conn.execute(select(*DEAL_COLUMNS).where(*where)
                               .order_by(hot_deals.c.id))).all()
    return [as_deal(row) for row in rows]


def is_live() -> ColumnElement[bool]:
    """A live deal (at most one per product) blocks starting another."""
    return hot_deals.c.status.in_(LIVE_DEAL_STATUSES)


async def live_deal_row(conn: AsyncConnection, product_id: int) -> Deal | None:
    row = (await conn.execute(select(*DEAL_COLUMNS).where(
        hot_deals.c.product_id == product_id, is_live()))).first()
    return None if row is None else as_deal(row)


def is_due() -> ColumnElement[bool]:
    """ACTIVE and past its end, by Postgres's clock (the one `ends_at` was set by)."""
    return (hot_deals.c.status == DealStatus.ACTIVE) & (hot_deals.c.ends_at < func.now())


def is_stuck(ended_seconds_ago: float) -> ColumnElement[bool]:
    """ENDED a while ago and not reconciled: its HotDealEnded flush has not happened."""
    return (hot_deals.c.status == DealStatus.ENDED) & (
        hot_deals.c.ended_at < func.now() - timedelta(seconds=ended_seconds_ago))


async def sold_units(conn: AsyncConnection, deal_id: int) -> int:
    return int((await conn.execute(
        select(func.coalesce(func.sum(orders.c.quantity), 0)).where(
            orders.c.hot_deal_id == deal_id, orders.c.status.in_(_SOLD)))).scalar_one())


async def take_from_product(conn: AsyncConnection, new: NewDeal) -> OpenedDeal:
    """Move the units from the product to a new ACTIVE deal (product row locked)."""
    product = (await conn.execute(select(products.c.stock, products.c.price).where(
        products.c.id == new.product_id).with_for_update())).first()
    if product is None:
        raise NotFound("product_not_found", f"product {new.product_id} does not exist")
    if await live_deal_row(conn, new.product_id) is not None:
        raise Conflict("deal_already_active", "this product already has a live deal")
    if product.stock < new.stock:
        raise Conflict("insufficient_stock",
                       f"product has {product.stock} units; {new.stock} requested")
    await conn.execute(products.update().where(products.c.id == new.product_id).values(
        stock=products.c.stock - new.stock, updated_at=func.now()))
    ends = (func.now() + timedelta(seconds=new.duration_seconds)
            if new.duration_seconds else None)
    deal_id, ends_at = (await conn.execute(hot_deals.insert().values(
        product_id=new.product_id, initial_stock=new.stock, per_user_limit=new.per_user_limit,
        status=DealStatus.ACTIVE, stock_backend=new.stock_backend,
        remaining_stock=new.stock if new.stock_backend is StockBackend.DB else 0,
        ends_at=ends, started_at=func.now()).returning(
            hot_deals.c.id, hot_deals.c.ends_at))).one()
    return OpenedDeal(int(deal_id), ends_at, int(product.price))


async def cas_ended(conn: AsyncConnection, deal_id: int) -> bool:
    """ACTIVE -> ENDED; False if the deal was not ACTIVE any more."""
    return (await conn.execute(hot_deals.update().where(
        hot_deals.c.id == deal_id, hot_deals.c.status == DealStatus.ACTIVE).values(
        status=DealStatus.ENDED, ended_at=func.now(), updated_at=func.now())
        .returning(hot_deals.c.id))).first() is not None


async def mark_reconciled(conn: AsyncConnection, deal_id: int, rec: Reconciliation) -> None:
    await conn.execute(hot_deals.update().where(hot_deals.c.id == deal_id).values(
        status=DealStatus.RECONCILED, returned_stock=rec.returned_stock, remaining_stock=0,
        reconciled_at=func.now(), updated_at=func.now(),
        ended_at=func.coalesce(hot_deals.c.ended_at, func.now())))
    await conn.execute(reconciliations.insert().values(
        hot_deal_id=deal_id, initial_stock=rec.initial_stock, redis_stock=rec.redis_stock,
        orphans_released=rec.orphans_released, cancelled_released=rec.cancelled_released,
        returned_stock=rec.returned_stock, pending_units=rec.pending_units,
        confirmed_units=rec.confirmed_units, balanced=rec.balanced, details=rec.details))


async def stored_reconciliation(conn: AsyncConnection, deal_id: int) -> Reconciliation:
    r = (await conn.execute(select(reconciliations).where(
        reconciliations.c.hot_deal_id == deal_id))).one()
    return Reconciliation(r.initial_stock, r.redis_stock, r.orphans_released,
                          r.cancelled_released, r.returned_stock, r.pending_units,
                          r.confirmed_units, r.balanced, r.details)


async def live_orders(conn: AsyncConnection, deal_id: int) -> list[LiveOrder]:
    rows = (await conn.execute(select(
        orders.c.id, orders.c.user_id, orders.c.quantity, orders.c.status,
        orders.c.idempotency_key, orders.c.created_at).where(
        orders.c.hot_deal_id == deal_id, orders.c.status.in_(_SOLD)))).all()
    return [LiveOrder(r.id, r.user_id, int(r.quantity), OrderStatus(r.status),
                      r.idempotency_key, r.created_at) for r in rows]


class PgLockedDeal:
    """`LockedDeal` over the transaction that owns the deal's fence and row lock."""

    def __init__(self, conn: AsyncConnection, topics: Topics, deal: Deal) -> None:
        self._conn, self._topics, self._deal = conn, topics, deal

    @property
    def deal(self) -> Deal:
        return self._deal

    async def units_by_status(self) -> dict[OrderStatus, int]:
        return await units_by_status(self._conn, self._deal.id)

    async def order_statuses(self, order_ids: list[UUID]) -> dict[UUID, OrderStatus]:
        return await order_statuses(self._conn, order_ids)

    async def live_orders(self) -> list[LiveOrder]:
        return await live_orders(self._conn, self._deal.id)

    async def unit_price(self) -> int:
        return int((await self._conn.execute(select(products.c.price).where(
            products.c.id == self._deal.product_id))).scalar_one())

    async def set_epoch(self, epoch: int) -> None:
        await self._conn.execute(hot_deals.update().where(hot_deals.c.id == self._deal.id)
                                 .values(epoch=epoch, updated_at=func.now()))

    async def reconcile(self, rec: Reconciliation) -> None:
        d = self._deal
        await give_back_to_product(self._conn, d.product_id, rec.returned_stock)
        await mark_reconciled(self._conn, d.id, rec)
        await add_event(self._conn, self._topics, HotDealReconciled(
            hot_deal_id=d.id, product_id=d.product_id, initial_stock=d.initial_stock,
            returned_stock=rec.returned_stock, pending_units=rec.pending_units,
            confirmed_units=rec.confirmed_units, balanced=rec.balanced))

    async def reconciliation(self) -> Reconciliation:
        return await stored_reconciliation(self._conn, self._deal.id)


class PgDeals:
    """`DealsDb` over Postgres; each method one short transaction or read."""

    def __init__(self, engine: AsyncEngine, topics: Topics) -> None:
        self.engine, self.topics = engine, topics

    async def _where(self, *where: ColumnElement[bool]) -> list[Deal]:
        async with self.engine.connect() as conn:
            return await deals_where(conn, *where)

    async def deal(self, deal_id: int) -> Deal:
        async with self.engine.connect() as conn:
            return await deal_row(conn, deal_id)

    async def live_deal(self, product_id: int) -> Deal | None:
        async with self.engine.connect() as conn:
            return await live_deal_row(conn, product_id)

    async def deal_status(self, deal_id: int) -> DealStatus | None:
        found = await self._where(hot_deals.c.id == deal_id)
        return found[0].status if found else None

    async def latest_deal_id(self, product_id: int) -> int | None:
        async with self.engine.connect() as conn:
            found = (await conn.execute(
                select(func.max(hot_deals.c.id)).where(hot_deals.c.product_id == product_id)
            )).scalar_one()
        return None if found is None else int(found)

    async def live_deal_ids(self) -> list[int]:
        return [d.id for d in await self._where(is_live())]

    async def active_redis_deals(self) -> list[Deal]:
        return await self._where(hot_deals.c.status == DealStatus.ACTIVE,
                                 hot_deals.c.stock_backend == StockBackend.REDIS)

    async def due_deals(self) -> list[Deal]:
        return await self._where(is_due())

    async def stuck_deal_ids(self, ended_seconds_ago: float) -> list[int]:
        return [d.id for d in await self._where(is_stuck(ended_seconds_ago))]

    async def deal_and_units(self, deal_id: int) -> tuple[Deal, dict[OrderStatus, int]]:
        async with self.engine.connect() as conn:
            return await deal_row(conn, deal_id), await units_by_status(conn, deal_id)

    async def sold_units(self, deal_id: int) -> int:
        async with self.engine.connect() as conn:
            return await sold_units(conn, deal_id)

    async def order_statuses(self, order_ids: list[UUID]) -> dict[UUID, OrderStatus]:
        async with self.engine.connect() as conn:
            return await order_statuses(conn, order_ids)

    async def open_deal(self, new: NewDeal) -> OpenedDeal:
        try:
            async with self.engine.begin() as conn:
                opened = await take_from_product(conn, new)
                await add_event(conn, self.topics, HotDealStarted(
                    hot_deal_id=opened.deal_id, product_id=new.product_id, stock=new.stock,
                    per_user_limit=new.per_user_limit, stock_backend=new.stock_backend.value,
                    ends_at=opened.ends_at))
        except IntegrityError as exc:  # a concurrent start won the unique live-deal index
            raise Conflict("deal_already_active", "this product already has a live deal") \
                from exc
        return opened

    async def mark_ended(self, deal: Deal, reason: EndReason) -> bool:
        async with self.engine.begin() as conn:
            ended = await cas_ended(conn, deal.id)
            if ended:
                await add_event(conn, self.topics, HotDealEnded(
                    hot_deal_id=deal.id, product_id=deal.product_id, reason=reason))
        return ended

    @asynccontextmanager
    async def locked(self, deal_id: int) -> AsyncIterator[PgLockedDeal]:
        async with self.engine.begin() as conn:
            yield PgLockedDeal(conn, self.topics, await deal_row(conn, deal_id, lock=True))


