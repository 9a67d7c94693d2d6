"""In-memory `DealsDb` with the adapter's rules (tests/integration/test_deals_contract.py)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from uuid import UUID

from hotdeal_core.domain import LIVE_DEAL_STATUSES, DealStatus, OrderStatus, StockBackend
from hotdeal_core.errors import Conflict, NotFound
from hotdeal_core.ports.deals import (
    Deal,
    EndReason,
    LiveOrder,
    NewDeal,
    OpenedDeal,
    Reconciliation,
)
from schemas.events import AnyEvent, HotDealEnded, HotDealReconciled, HotDealStarted


@dataclass
class FakeProduct:
    stock: int
    price: int


@dataclass
class FakeOrder:
    id: UUID
    deal_id: int
    user_id: str
    quantity: int
    status: OrderStatus
    idempotency_key: str | None
    created_at: datetime


class FakeLockedDeal:
    """Reads see the deal as locked; writes apply together on a clean exit."""

    def __init__(self, db: FakeDeals, deal: Deal) -> None:
        self.db, self._deal = db, deal
        self.writes: list[Callable[[], None]] = []

    @property
    def deal(self) -> Deal:
        return self._deal

    async def units_by_status(self) -> dict[OrderStatus, int]:
        return self.db.units(self._deal.id)

    async def order_statuses(self, order_ids: list[UUID]) -> dict[UUID, OrderStatus]:
        return await self.db.order_statuses(order_ids)

    async def live_orders(self) -> list[LiveOrder]:
        return [LiveOrder(o.id, o.user_id, o.quantity, o.status, o.idempotency_key,
                          o.created_at) for o in self.db.orders.values()
                if o.deal_id == self._deal.id and o.status is not OrderStatus.CANCELLED]

    async def unit_price(self) -> int:
        return self.db.products[self._deal.product_id].price

    async def set_epoch(self, epoch: int) -> None:
        self.db.fault("set_epoch")
        self.writes.append(lambda: self.db.update(self._deal.id, epoch=epoch))

    async def reconcile(self, rec: Reconciliation) -> None:
        self.db.fault("reconcile")
        d = self._deal

        def write() -> None:
            self.db.products[d.product_id].stock += rec.returned_stock
            self.db.update(d.id, status=DealStatus.RECONCILED, returned_stock=rec.returned_stock,
                           remaining_stock=0)
            self.db.ended_at.setdefault(d.id, self.db.now())
            self.db.reconciliations[d.id] = rec
            self.db.events.append(HotDealReconciled(
                hot_deal_id=d.id, product_id=d.product_id, initial_stock=d.initial_stock,
                returned_stock=rec.returned_stock, pending_units=rec.pending_units,
                confirmed_units=rec.confirmed_units, balanced=rec.balanced))
        self.writes.append(write)

    async def reconciliation(self) -> Reconciliation:
        return self.db.reconciliations[self._deal.id]


class FakeDeals:
    def __init__(self) -> None:
        self.products: dict[int, FakeProduct] = {}
        self.deals: dict[int, Deal] = {}
        self.ended_at: dict[int, datetime] = {}
        self.reconciliations: dict[int, Reconciliation] = {}
        self.orders: dict[UUID, FakeOrder] = {}
        self.events: list[AnyEvent] = []  # the outbox
        self.clock_offset = timedelta(0)  # Postgres's clock is now() + this
        self._faults: dict[str, BaseException] = {}
        self._locks: dict[int, asyncio.Lock] = {}
        self._ids = 0

    # -- what tests use to arrange and to break things
    def now(self) -> datetime:
        return datetime.now(UTC) + self.clock_offset

    def fail_next(self, method: str, exc: BaseException) -> None:
        """The next call of `method` raises `exc` (nothing written)."""
        self._faults[method] = exc

    def fault(self, method: str) -> None:
        exc = self._faults.pop(method, None)
        if exc is not None:
            raise exc

    def _next_id(self) -> int:
        self._ids += 1
        return self._ids

    def add_product(self, stock: int, price: int = 1000) -> int:
        pid = self._next_id()
        self.products[pid] = FakeProduct(stock, price)
        return pid

    def add_order(self, deal_id: int, quantity: int = 1,
                  status: OrderStatus = OrderStatus.PENDING, user_id: str | None = None,
                  idempotency_key: str | None = None, order_id: UUID | None = None) -> UUID:
        user_id = user_id or f"user-{uuid.uuid4().hex[:8]}"
        order = FakeOrder(order_id or uuid.uuid4(), deal_id, user_id, quantity, status,
                          idempotency_key, self.now())
        self.orders[order.id] = order
        return order.id

    def update(self, deal_id: int, **values: object) -> None:
        self.deals[deal_id] = replace(self.deals[deal_id], **values)  # type: ignore[arg-type]

    def units(self, deal_id: int) -> dict[OrderStatus, int]:
        units = {s: 0 for s in OrderStatus}
        for o in self.orders.values():
            if o.deal_id == deal_id:
                units[o.status] += o.quantity
        return units

    def event_types(self, deal_id: int) -> list[str]:
        return [e.type for e in self.events if getattr(e, "hot_deal_id", None) == deal_id]

    # -- the port
    async def deal(self, deal_id: int) -> Deal:
        self.fault("deal")
        if deal_id not in self.deals:
            raise NotFound("deal_not_found", f"deal {deal_id} does not exist")
        return self.deals[deal_id]

    async def live_deal(self, product_id: int) -> Deal | None:
        self.fault("live_deal")
        return next((d for d in self.deals.values() if d.product_id == product_id
                     and d.status in LIVE_DEAL_STATUSES), None)

    async def deal_status(self, deal_id: int) -> DealStatus | None:
        deal = self.deals.get(deal_id)
        return None if deal is None else deal.status

    async def latest_deal_id(self, product_id: int) -> int | None:
        return max((d.id for d in self.deals.values() if d.product_id == product_id),
                   default=None)

    async def live_deal_ids(self) -> list[int]:
        return sorted(d.id for d in self.deals.values() if d.status in LIVE_DEAL_STATUSES)

    async def active_redis_deals(self) -> list[Deal]:
        return [d for _, d in sorted(self.deals.items()) if d.status is DealStatus.ACTIVE
                and d.stock_backend is StockBackend.REDIS]

    async def due_deals(self) -> list[Deal]:
        self.fault("due_deals")
        now = self.now()
        return [d for _, d in sorted(self.deals.items()) if d.status is DealStatus.ACTIVE
                and d.ends_at is not None and d.ends_at < now]

    async def stuck_deal_ids(self, ended_seconds_ago: float) -> list[int]:
        since = self.now() - timedelta(seconds=ended_seconds_ago)
        return sorted(i for i, d in self.deals.items() if d.status is DealStatus.ENDED
                      and self.ended_at[i] < since)

    async def deal_and_units(self, deal_id: int) -> tuple[Deal, dict[OrderStatus, int]]:
        return await self.deal(deal_id), self.units(deal_id)

    async def sold_units(self, deal_id: int) -> int:
        units = self.units(deal_id)
        return units[OrderStatus.PENDING] + units[OrderStatus.CONFIRMED]

    async def order_statuses(self, order_ids: list[UUID]) -> dict[UUID, OrderStatus]:
        return {i: self.orders[i].status for i in order_ids if i in self.orders}

    async def open_deal(self, new: NewDeal) -> OpenedDeal:
        self.fault("open_deal")
        product = self.products.get(new.product_id)
        if product is None:
            raise NotFound("product_not_found", f"product {new.product_id} does not exist")
        if await self.live_deal(new.product_id) is not None:
            raise Conflict("deal_already_active", "this product already has a live deal")
        if product.stock < new.stock:
            raise Conflict("insufficient_stock",
                           f"product has {product.stock} units; {new.stock} requested")
        product.stock -= new.stock
        ends_at = (self.now() + timedelta(seconds=new.duration_seconds)
                   if new.duration_seconds else None)
        deal = Deal(self._next_id(), new.product_id, DealStatus.ACTIVE, new.stock_backend,
                    new.stock, new.per_user_limit,
                    new.stock if new.stock_backend is StockBackend.DB else 0, 0, 1, ends_at)
        self.deals[deal.id] = deal
        self.events.append(HotDealStarted(
            hot_deal_id=deal.id, product_id=new.product_id, stock=new.stock,
            per_user_limit=new.per_user_limit, stock_backend=new.stock_backend.value,
            ends_at=ends_at))
        return OpenedDeal(deal.id, ends_at, product.price)

    async def mark_ended(self, deal: Deal, reason: EndReason) -> bool:
        self.fault("mark_ended")
        current = self.deals.get(deal.id)
        if current is None or current.status is not DealStatus.ACTIVE:
            return False
        self.update(deal.id, status=DealStatus.ENDED)
        self.ended_at[deal.id] = self.now()
        self.events.append(HotDealEnded(hot_deal_id=deal.id, product_id=deal.product_id,
                                        reason=reason))
        return True

    @asynccontextmanager
    async def locked(self, deal_id: int) -> AsyncIterator[FakeLockedDeal]:
        async with self._locks.setdefault(deal_id, asyncio.Lock()):
            books = FakeLockedDeal(self, await self.deal(deal_id))
            yield books
            for write in books.writes:  # committed only on a clean exit
                write()
