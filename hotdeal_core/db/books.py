"""A deal's books in SQL, shared by the adapters: its row (and fence), its order units by
status, order statuses by id, and giving units back to a product."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from sqlalchemy import ARRAY, any_, bindparam, func, select
from sqlalchemy.dialects.postgresql import UUID as PG_UUID
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.elements import BindParameter

from hotdeal_core.db.fence import own_deal
from hotdeal_core.db.tables import hot_deals, orders, products
from hotdeal_core.domain import DealStatus, OrderStatus, StockBackend
from hotdeal_core.errors import NotFound
from hotdeal_core.ports.deals import Deal
from hotdeal_core.stock.port import Reservation

DEAL_COLUMNS = (hot_deals.c.id, hot_deals.c.product_id, hot_deals.c.status,
                hot_deals.c.stock_backend, hot_deals.c.initial_stock,
                hot_deals.c.per_user_limit, hot_deals.c.remaining_stock,
                hot_deals.c.returned_stock, hot_deals.c.epoch, hot_deals.c.ends_at)


def as_deal(row: Any) -> Deal:
    return Deal(int(row.id), int(row.product_id), DealStatus(row.status),
                StockBackend(row.stock_backend), int(row.initial_stock),
                int(row.per_user_limit), int(row.remaining_stock), int(row.returned_stock),
                int(row.epoch), row.ends_at)


async def deal_row(conn: AsyncConnection, deal_id: int, *, lock: bool = False) -> Deal:
    """The deal; `lock`: own its fence (no order of it is written or cancelled until the
    transaction ends) and lock its row."""
    query = select(*DEAL_COLUMNS).where(hot_deals.c.id == deal_id)
    if lock:
        await own_deal(conn, deal_id)
        query = query.with_for_update()
    row = (await conn.execute(query)).first()
    if row is None:
        raise NotFound("deal_not_found", f"deal {deal_id} does not exist")
    return as_deal(row)


async def units_by_status(conn: AsyncConnection, deal_id: int) -> dict[OrderStatus, int]:
    rows = (await conn.execute(
        select(orders.c.status, func.coalesce(func.sum(orders.c.quantity), 0))
        .where(orders.c.hot_deal_id == deal_id).group_by(orders.c.status))).all()
    units = {s: 0 for s in OrderStatus}
    units.update({OrderStatus(status): int(n) for status, n in rows})
    return units


_UUID_ARRAY: ARRAY[Any] = ARRAY(PG_UUID(as_uuid=True))


def order_ids_param(items: list[UUID] | list[Reservation]) -> BindParameter[Any]:
    """Order ids as one uuid[] parameter: a deal may hold more live reservations than a
    statement may have parameters (32,767)."""
    ids = [i if isinstance(i, UUID) else i.order_id for i in items]
    return bindparam("ids", ids, type_=_UUID_ARRAY)


async def order_statuses(conn: AsyncConnection,
                         order_ids: list[UUID]) -> dict[UUID, OrderStatus]:
    if not order_ids:
        return {}
    rows = (await conn.execute(select(orders.c.id, orders.c.status).where(
        orders.c.id == any_(order_ids_param(order_ids))))).all()
    return {row.id: OrderStatus(row.status) for row in rows}


async def give_back_to_product(conn: AsyncConnection, product_id: int, units: int) -> None:
    """Return `units` to the product's own stock (in the caller's transaction)."""
    await conn.execute(products.update().where(products.c.id == product_id).values(
        stock=products.c.stock + units, updated_at=func.now()))
