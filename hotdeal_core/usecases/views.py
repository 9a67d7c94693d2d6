"""Read models returned by the use cases."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from uuid import UUID


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
