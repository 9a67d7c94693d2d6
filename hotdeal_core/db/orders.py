"""Orders in Postgres: the stock taken in the order's transaction, order reads, the orphan
sweep's voids; `PostgresOrders` is the orders port over an engine."""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from uuid import UUID

from sqlalchemy import func, select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from hotdeal_core.db import order_writes, products
from hotdeal_core.db.engine import violated_constraint
from hotdeal_core.db.tables import hot_deals, orders
from hotdeal_core.db.tables import products as products_table
from hotdeal_core.domain import (
    LIVE_DEAL_STATUSES,
    CancelReason,
    DealStatus,
    OrderStatus,
    StockBackend,
)
from hotdeal_core.messaging.outbox import add_event
from hotdeal_core.messaging.topics import Topics
from hotdeal_core.ports.orders import (
    LiveDeal,
    NewOrder,
    OrderState,
    Product,
    PublishNow,
    ReservedOrder,
    TakeAnswer,
    Taken,
)
from hotdeal_core.usecases.views import OrderView
from schemas.events import AnyEvent, OrderPlaced

IDEMPOTENCY_CONSTRAINT = "uq_orders_user_idempotency_key"
HELD_STATUSES = (OrderStatus.PENDING, OrderStatus.CONFIRMED)  # count against a user's limit

_TAKE_FROM_PRODUCT = text(
    "UPDATE products SET stock = stock - :q, updated_at = now() "
    "WHERE id = :pid AND stock >= :q RETURNING id")
# The old design's hot row: every buyer of the deal queues on this row lock.
_TAKE_FROM_DEAL = text(
    "UPDATE hot_deals SET remaining_stock = remaining_stock - :q, updated_at = now() "
    "WHERE id = :deal AND status = :active AND remaining_stock >= :q RETURNING id")


class _Refused(Exception):
    """Rolls the order's transaction back with its answer."""

    def __init__(self, answer: TakeAnswer) -> None:
        self.answer = answer


def order_view(row: Any) -> OrderView:
    return OrderView(row.id, row.product_id, row.hot_deal_id, row.user_id, row.quantity,
                     row.unit_price, row.status, row.cancel_reason, row.expires_at,
                     row.created_at, row.updated_at, row.paid_at is not None)


async def load_order(conn: AsyncConnection, order_id: UUID) -> OrderView | None:
    row = (await conn.execute(select(orders).where(orders.c.id == order_id))).first()
    return order_view(row) if row else None


async def load_order_by_key(conn: AsyncConnection, user_id: str, key: str) -> OrderView | None:
    query = select(orders).where(orders.c.user_id == user_id, orders.c.idempotency_key == key)
    row = (await conn.execute(query)).first()
    return order_view(row) if row else None


async def take_stock_and_place(engine: AsyncEngine, topics: Topics,
                               new: NewOrder) -> TakeAnswer:
    """The order, its stock taken (the deal's hot row, or the product's) and its event, in
    one transaction; a refusal rolls it all back."""
    try:
        async with engine.begin() as conn:
            if new.idempotency_key:
                first = await load_order_by_key(conn, new.user_id, new.idempotency_key)
                if first is not None:
                    return TakeAnswer(Taken.REPLAYED, first)
            deal_id, unit_price = await _take_stock(conn, new)
            order = await _insert_order(conn, topics, new, deal_id, unit_price)
    except _Refused as refused:
        return refused.answer
    except IntegrityError as exc:
        if violated_constraint(exc) == IDEMPOTENCY_CONSTRAINT and new.idempotency_key:
            return TakeAnswer(Taken.KEY_TAKEN)
        raise
    return TakeAnswer(Taken.PLACED, order)


async def _take_stock(conn: AsyncConnection, new: NewOrder) -> tuple[int | None, int]:
    row = (await conn.execute(
        select(products_table.c.price, hot_deals.c.id, hot_deals.c.status,
               hot_deals.c.stock_backend, hot_deals.c.per_user_limit)
        .select_from(products_table.outerjoin(
            hot_deals, (hot_deals.c.product_id == products_table.c.id)
            & hot_deals.c.status.in_(LIVE_DEAL_STATUSES)))
        .where(products_table.c.id == new.product_id))).first()
    if row is None:
        raise _Refused(TakeAnswer(Taken.NO_PRODUCT))
    if row.id is None:  # ordinary product
        if (await conn.execute(_TAKE_FROM_PRODUCT,
                               {"q": new.quantity, "pid": new.product_id})).first() is None:
            raise _Refused(TakeAnswer(Taken.SOLD_OUT))
        return None, int(row.price)
    if row.status != DealStatus.ACTIVE or row.stock_backend != StockBackend.DB:
        raise _Refused(TakeAnswer(Taken.NOT_ACTIVE))
    if (await conn.execute(_TAKE_FROM_DEAL, {"q": new.quantity, "deal": row.id,
                                             "active": DealStatus.ACTIVE})).first() is None:
        raise _Refused(TakeAnswer(Taken.SOLD_OUT))
    # Read under the hot row's lock: two requests of one buyer cannot both pass.
    held = int((await conn.execute(
        select(func.coalesce(func.sum(orders.c.quantity), 0))
        .where(orders.c.hot_deal_id == row.id, orders.c.user_id == new.user_id,
               orders.c.status.in_(HELD_STATUSES)))).scalar_one())
    if held + new.quantity > row.per_user_limit:
        raise _Refused(TakeAnswer(Taken.LIMIT_EXCEEDED, limit=int(row.per_user_limit),
                                  held=held))
    return int(row.id), int(row.price)


async def _insert_order(conn: AsyncConnection, topics: Topics, new: NewOrder,
                        deal_id: int | None, unit_price: int) -> OrderView:
    """Expiry by Postgres's clock (as the expiry sweeper's), never this host's."""
    row = (await conn.execute(orders.insert().values(
        id=new.order_id, product_id=new.product_id, hot_deal_id=deal_id, user_id=new.user_id,
        quantity=new.quantity, unit_price=unit_price, status=OrderStatus.PENDING,
        idempotency_key=new.idempotency_key,
        expires_at=func.now() + timedelta(seconds=new.ttl_seconds))
        .returning(orders))).one()
    await add_event(conn, topics, OrderPlaced(
        order_id=new.order_id, product_id=new.product_id, hot_deal_id=deal_id,
        user_id=new.user_id, quantity=new.quantity, unit_price=unit_price,
        expires_at=row.expires_at))
    return order_view(row)


async def live_redis_deals(conn: AsyncConnection) -> list[tuple[int, int]]:
    rows = (await conn.execute(select(hot_deals.c.id, hot_deals.c.product_id).where(
        hot_deals.c.status == DealStatus.ACTIVE,
        hot_deals.c.stock_backend == StockBackend.REDIS))).all()
    return [(int(r.id), int(r.product_id)) for r in rows]


async def order_states(conn: AsyncConnection, order_ids: list[UUID]) -> dict[UUID, OrderState]:
    # One uuid[] parameter: a sweep may look at more orders than a statement has parameters.
    rows = (await conn.execute(text(
        "SELECT id, status, expires_at FROM orders WHERE id = ANY(CAST(:ids AS uuid[]))"),
        {"ids": order_ids})).all()
    return {row.id: OrderState(row.status, row.expires_at) for row in rows}


async def void_orphan(conn: AsyncConnection, deal_id: int, product_id: int, order_id: UUID,
                      user_id: str, quantity: int) -> bool:
    """The orphan's order id as CANCELLED (orphaned): the API's late insert of it is refused
    by the primary key, so its units can be released without racing it."""
    price = (await conn.execute(select(products_table.c.price).where(
        products_table.c.id == product_id))).scalar_one()
    inserted = (await conn.execute(insert(orders).values(
        id=order_id, product_id=product_id, hot_deal_id=deal_id, user_id=user_id,
        quantity=quantity, unit_price=price, status=OrderStatus.CANCELLED,
        cancel_reason=CancelReason.ORPHANED, expires_at=func.now())
        .on_conflict_do_nothing(index_elements=["id"]).returning(orders.c.id))).first()
    return inserted is not None


class PostgresOrders:
    """The orders port over an engine: each call its own connection or transaction."""

    def __init__(self, engine: AsyncEngine, topics: Topics) -> None:
        self.engine = engine
        self.topics = topics

    async def write_reserved_orders(self, items: list[ReservedOrder],
                                    publish_now: PublishNow | None,
                                    ) -> list[OrderView | BaseException]:
        return await order_writes.write_reserved_orders(self.engine, items, publish_now)

    async def take_stock_and_place(self, order: NewOrder) -> TakeAnswer:
        return await take_stock_and_place(self.engine, self.topics, order)

    async def order(self, order_id: UUID) -> OrderView | None:
        async with self.engine.connect() as conn:
            return await load_order(conn, order_id)

    async def order_by_key(self, user_id: str, key: str) -> OrderView | None:
        async with self.engine.connect() as conn:
            return await load_order_by_key(conn, user_id, key)

    async def add_event(self, event: AnyEvent) -> None:
        async with self.engine.begin() as conn:
            await add_event(conn, self.topics, event)

    async def create_product(self, name: str, price: int, stock: int) -> int:
        async with self.engine.begin() as conn:
            return await products.insert_product(conn, name, price, stock)

    async def product(self, product_id: int) -> tuple[Product, LiveDeal | None] | None:
        async with self.engine.connect() as conn:
            return await products.product_and_deal(conn, product_id)

    async def live_redis_deals(self) -> list[tuple[int, int]]:
        async with self.engine.connect() as conn:
            return await live_redis_deals(conn)

    async def order_states(self, order_ids: list[UUID]) -> dict[UUID, OrderState]:
        async with self.engine.connect() as conn:
            return await order_states(conn, order_ids)

    async def void_orphan(self, deal_id: int, product_id: int, order_id: UUID, user_id: str,
                          quantity: int) -> bool:
        async with self.engine.begin() as conn:
            return await void_orphan(conn, deal_id, product_id, order_id, user_id, quantity)
