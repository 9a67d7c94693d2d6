"""The deal's books, the reads and writes the flush, the audit, the recovery and the orphan
sweep share: the deal row (and its fence), its order units by status, what its Redis state
holds by what the orders say, and giving units back to the product.

Locks: the flush and the rebuild read the deal with `lock=True`: they own the deal fence
(`hotdeal_core.db.fence`, exclusive) and lock the deal row `FOR UPDATE`; order inserts and
cancellations share the fence. So while a flush or a rebuild reads the orders, no order of
the deal can appear or change status, which is what makes both exact. They hold it across
one Redis call on purpose (an operator action, not the hot path).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from uuid import UUID

from sqlalchemy import ARRAY, any_, bindparam, func, select, text
from sqlalchemy.dialects.postgresql import UUID as PG_UUID
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.elements import BindParameter

from hotdeal_core.db.fence import own_deal
from hotdeal_core.db.tables import hot_deals, orders
from hotdeal_core.domain import OrderStatus
from hotdeal_core.errors import NotFound
from hotdeal_core.stock.port import Reservation
from hotdeal_core.usecases.context import Context


async def deal_row(conn: AsyncConnection, deal_id: int, *, lock: bool = False) -> Any:
    query = select(hot_deals).where(hot_deals.c.id == deal_id)
    if lock:  # the fence stops order writes; the row lock, the db design's hot-row updates
        await own_deal(conn, deal_id)
        query = query.with_for_update()
    row = (await conn.execute(query)).first()
    if row is None:
        raise NotFound("deal_not_found", f"deal {deal_id} does not exist")
    return row


async def units_by_status(conn: AsyncConnection, deal_id: int) -> dict[str, int]:
    rows = (await conn.execute(
        select(orders.c.status, func.coalesce(func.sum(orders.c.quantity), 0))
        .where(orders.c.hot_deal_id == deal_id).group_by(orders.c.status))).all()
    units = {s.value: 0 for s in OrderStatus}
    units.update({status: int(n) for status, n in rows})
    return units


async def order_statuses(conn: AsyncConnection, order_ids: list[UUID]) -> dict[UUID, str]:
    if not order_ids:
        return {}
    # One array parameter, not one parameter per id: a deal may hold more live
    # reservations than a statement may have parameters (32,767).
    rows = (await conn.execute(select(orders.c.id, orders.c.status).where(
        orders.c.id == any_(order_ids_param(order_ids))))).all()
    return {row.id: row.status for row in rows}


_UUID_ARRAY: ARRAY[Any] = ARRAY(PG_UUID(as_uuid=True))


def order_ids_param(items: list[UUID] | list[Reservation]) -> BindParameter[Any]:
    """Order ids as one uuid[] parameter."""
    ids = [i if isinstance(i, UUID) else i.order_id for i in items]
    return bindparam("ids", ids, type_=_UUID_ARRAY)


@dataclass(frozen=True, slots=True)
class HeldUnits:
    """What a deal's Redis state holds, classified by what Postgres says of its orders."""

    state_found: bool  # the Redis state is this deal's
    stock: int  # units on sale (0 when the state is missing or another deal's)
    orphaned: int  # reserved, and no order row
    cancelled: int  # reserved for an order already CANCELLED (not released yet)

    @property
    def in_flight(self) -> int:
        return self.orphaned + self.cancelled


async def held_units(ctx: Context, conn: AsyncConnection, deal_id: int,
                     product_id: int) -> HeldUnits:
    """Snapshot the deal's Redis state, read its reservations' order statuses, classify."""
    snap = await ctx.stock.snapshot(product_id)
    statuses = await order_statuses(conn, [r.order_id for r in snap.reservations])
    found = snap.deal_id == deal_id
    return HeldUnits(
        state_found=found, stock=snap.stock if found else 0,
        orphaned=sum(r.quantity for r in snap.reservations if r.order_id not in statuses),
        cancelled=sum(r.quantity for r in snap.reservations
                      if statuses.get(r.order_id) == OrderStatus.CANCELLED))


_GIVE_BACK = text("UPDATE products SET stock = stock + :units, updated_at = now() "
                  "WHERE id = :product_id")


async def give_back_to_product(conn: AsyncConnection, product_id: int, units: int) -> None:
    """Return `units` to the product's own stock (in the caller's transaction)."""
    await conn.execute(_GIVE_BACK, {"units": units, "product_id": product_id})
