"""Read models returned by the use cases."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from hotdeal_core.db.tables import orders


@dataclass(frozen=True, slots=True)
class OrderView:
    id: UUID
    product_id: int
    hot_deal_id: int | None
    user_id: str
    quantity: int
    unit_price: int
    status: str
    cancel_reason: str | None
    expires_at: datetime
    created_at: datetime
    updated_at: datetime
    paid: bool = False  # a successful payment was accepted in time (orders.paid_at)

    @property
    def total(self) -> int:
        return self.quantity * self.unit_price

    @classmethod
    def from_row(cls, row: Any) -> OrderView:
        return cls(row.id, row.product_id, row.hot_deal_id, row.user_id, row.quantity,
                   row.unit_price, row.status, row.cancel_reason, row.expires_at,
                   row.created_at, row.updated_at, row.paid_at is not None)


async def load_order(conn: AsyncConnection, order_id: UUID) -> OrderView | None:
    row = (await conn.execute(select(orders).where(orders.c.id == order_id))).first()
    return OrderView.from_row(row) if row else None


async def load_order_by_key(conn: AsyncConnection, user_id: str, key: str) -> OrderView | None:
    query = select(orders).where(orders.c.user_id == user_id, orders.c.idempotency_key == key)
    row = (await conn.execute(query)).first()
    return OrderView.from_row(row) if row else None
