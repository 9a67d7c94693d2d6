"""The deals port: what starting, ending, flushing, recovering and auditing a deal need from
Postgres (adapter: hotdeal_core/db/deals.py; fake: tests/fakes/deals.py)."""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import Literal, Protocol
from uuid import UUID

from hotdeal_core.domain import DealStatus, OrderStatus, StockBackend

EndReason = Literal["stopped", "duration_over"]


@dataclass(frozen=True, slots=True)
class Deal:
    id: int
    product_id: int
    status: DealStatus
    stock_backend: StockBackend
    initial_stock: int
    per_user_limit: int
    remaining_stock: int  # live stock of a deal whose backend is Postgres ("db")
    returned_stock: int  # units given back to the product (the flush, later cancellations)
    epoch: int
    ends_at: datetime | None


@dataclass(frozen=True, slots=True)
class NewDeal:
    product_id: int
    stock: int
    per_user_limit: int
    stock_backend: StockBackend
    duration_seconds: float | None  # None: until stopped


@dataclass(frozen=True, slots=True)
class OpenedDeal:
    deal_id: int
    ends_at: datetime | None  # by Postgres's clock, the one `due_deals` compares with
    unit_price: int


@dataclass(frozen=True, slots=True)
class LiveOrder:
    """A PENDING or CONFIRMED order of a deal: what a rebuild of its Redis state needs."""

    id: UUID
    user_id: str
    quantity: int
    status: OrderStatus
    idempotency_key: str | None
    created_at: datetime


@dataclass(frozen=True, slots=True)
class Reconciliation:
    """A flush's figures, stored once per deal."""

    initial_stock: int
    redis_stock: int
    orphans_released: int
    cancelled_released: int
    returned_stock: int
    pending_units: int
    confirmed_units: int
    balanced: bool
    details: str | None = None


class OrderStatuses(Protocol):
    async def order_statuses(self, order_ids: list[UUID]) -> dict[UUID, OrderStatus]:
        """The status of each of these orders that exists (any number of ids)."""
        ...


class LockedDeal(OrderStatuses, Protocol):
    """A deal under its exclusive fence and row lock: no order of it appears or changes
    status meanwhile. One transaction, committed on a clean exit, rolled back on an error."""

    @property
    def deal(self) -> Deal: ...

    async def units_by_status(self) -> dict[OrderStatus, int]: ...

    async def live_orders(self) -> list[LiveOrder]: ...

    async def unit_price(self) -> int:
        """The product's price (what a rebuilt state sells at)."""
        ...

    async def set_epoch(self, epoch: int) -> None: ...

    async def reconcile(self, rec: Reconciliation) -> None:
        """Give `rec.returned_stock` back to the product, mark the deal RECONCILED, store
        `rec`, and write HotDealReconciled."""
        ...

    async def reconciliation(self) -> Reconciliation:
        """The stored figures of a RECONCILED deal."""
        ...


class DealsDb(OrderStatuses, Protocol):
    async def deal(self, deal_id: int) -> Deal:
        """The deal; NotFound (deal_not_found) if there is none."""
        ...

    async def live_deal(self, product_id: int) -> Deal | None:
        """The product's SCHEDULED, ACTIVE or ENDED deal (at most one)."""
        ...

    async def deal_status(self, deal_id: int) -> DealStatus | None: ...

    async def latest_deal_id(self, product_id: int) -> int | None: ...

    async def live_deal_ids(self) -> list[int]: ...

    async def active_redis_deals(self) -> list[Deal]:
        """ACTIVE deals whose stock is in Redis."""
        ...

    async def due_deals(self) -> list[Deal]:
        """ACTIVE deals whose `ends_at` is past, by Postgres's clock."""
        ...

    async def stuck_deal_ids(self, ended_seconds_ago: float) -> list[int]:
        """ENDED deals that ended longer ago than this, by Postgres's clock."""
        ...

    async def deal_and_units(self, deal_id: int) -> tuple[Deal, dict[OrderStatus, int]]:
        """The deal and its order units by status, in one read (NotFound if no deal)."""
        ...

    async def sold_units(self, deal_id: int) -> int:
        """Units of the deal's PENDING and CONFIRMED orders."""
        ...

    async def open_deal(self, new: NewDeal) -> OpenedDeal:
        """Move `new.stock` units from the product to a new ACTIVE deal and write
        HotDealStarted. NotFound (product_not_found); Conflict (deal_already_active,
        insufficient_stock)."""
        ...

    async def mark_ended(self, deal: Deal, reason: EndReason) -> bool:
        """ACTIVE -> ENDED and HotDealEnded, if still ACTIVE (compare-and-set): whether
        this call ended it."""
        ...

    def locked(self, deal_id: int) -> AbstractAsyncContextManager[LockedDeal]:
        """The deal under its exclusive fence and row lock (NotFound if no deal)."""
        ...
