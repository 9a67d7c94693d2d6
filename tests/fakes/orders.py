"""In-memory orders port with the Postgres adapter's rules (held to them by
tests/integration/test_orders_contract.py), plus faults a unit test can inject."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from uuid import UUID

from hotdeal_core.domain import CancelReason, DealStatus, OrderStatus, StockBackend
from hotdeal_core.messaging.outbox import OutboxRow
from hotdeal_core.messaging.topics import Topics, event_key
from hotdeal_core.ports.orders import (
    CommitUnknown,
    Fenced,
    LiveDeal,
    NewOrder,
    NotWritten,
    OrderState,
    Product,
    PublishNow,
    ReservedOrder,
    TakeAnswer,
    Taken,
)
from hotdeal_core.usecases.views import OrderView
from schemas.events import AnyEvent, OrderPlaced

LIVE = (DealStatus.SCHEDULED, DealStatus.ACTIVE)


@dataclass
class FakeDeal:
    id: int
    product_id: int
    status: str
    stock_backend: str
    initial_stock: int
    per_user_limit: int
    remaining_stock: int
    epoch: int = 1


@dataclass(frozen=True, slots=True)
class FakeEvent:
    topic: str
    key: str
    event: AnyEvent
    headers: dict[str, str] | None


class FakeOrders:
    def __init__(self, topics: Topics | None = None,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        """`clock` stands for Postgres's now()."""
        self.topics = topics or Topics()
        self.clock = clock
        self.products: dict[int, Product] = {}
        self.deals: dict[int, FakeDeal] = {}
        self.orders: dict[UUID, OrderView] = {}
        self.outbox: list[FakeEvent] = []
        # Faults: the next group commit's outcome is unknown, having `landed` or not.
        self.commit_unknown: bool = False
        self.landed: bool = False
        # The next insert of a keyed order meets a concurrent one with the same key.
        self.key_race: OrderView | None = None
        self._ids = 0
        self._keys: dict[tuple[str, str], UUID] = {}

    # What the contract suite sets up through SQL on the Postgres side.
    def add_deal(self, product_id: int, stock: int, per_user_limit: int, *,
                 backend: str = StockBackend.REDIS, status: str = DealStatus.ACTIVE) -> int:
        self._ids += 1
        self.deals[self._ids] = FakeDeal(self._ids, product_id, status, backend, stock,
                                         per_user_limit, stock)
        return self._ids

    def events_of(self, key: str) -> list[AnyEvent]:
        return [e.event for e in self.outbox if e.key == key]

    async def write_reserved_orders(self, items: list[ReservedOrder],
                                    publish_now: PublishNow | None,
                                    ) -> list[OrderView | BaseException]:
        unknown, self.commit_unknown = self.commit_unknown, False
        now = self.clock()
        outcomes: list[OrderView | BaseException] = []
        handed: list[OutboxRow] = []
        written: list[UUID] = []
        for i in items:
            deal = self.deals.get(i.deal_id)
            if deal is None or deal.status != DealStatus.ACTIVE or deal.epoch != i.epoch:
                outcomes.append(Fenced())
                continue
            if i.order_id in self.orders or (i.idempotency_key and self._by_key(
                    i.user_id, i.idempotency_key) is not None):
                outcomes.append(NotWritten())
                continue
            order = OrderView(i.order_id, i.product_id, i.deal_id, i.user_id, i.quantity,
                              i.unit_price, OrderStatus.PENDING, None,
                              now + timedelta(seconds=i.ttl_seconds), now, now)
            self._write(order, i.idempotency_key)
            written.append(i.order_id)
            event = self._placed(order)
            self.outbox.append(FakeEvent(i.topic, str(i.order_id), event, i.headers))
            handed.append(OutboxRow(len(self.outbox), i.topic, str(i.order_id),
                                    event.model_dump_json(), now, 0, i.headers))
            outcomes.append(order)
        if unknown:
            if not self.landed:
                for order_id in written:
                    self._unwrite(order_id)
            raise CommitUnknown()
        if publish_now is not None and handed:
            publish_now(handed)
        return outcomes

    async def take_stock_and_place(self, order: NewOrder) -> TakeAnswer:
        if order.idempotency_key:
            first = self._by_key(order.user_id, order.idempotency_key)
            if first is not None:
                return TakeAnswer(Taken.REPLAYED, first)
        product = self.products.get(order.product_id)
        if product is None:
            return TakeAnswer(Taken.NO_PRODUCT)
        deal = self._live_deal(order.product_id)
        if deal is None:
            if product.stock < order.quantity:
                return TakeAnswer(Taken.SOLD_OUT)
        elif deal.status != DealStatus.ACTIVE or deal.stock_backend != StockBackend.DB:
            return TakeAnswer(Taken.NOT_ACTIVE)
        elif deal.remaining_stock < order.quantity:
            return TakeAnswer(Taken.SOLD_OUT)
        else:
            held = sum(o.quantity for o in self.orders.values() if o.hot_deal_id == deal.id
                       and o.user_id == order.user_id
                       and o.status in (OrderStatus.PENDING, OrderStatus.CONFIRMED))
            if held + order.quantity > deal.per_user_limit:
                return TakeAnswer(Taken.LIMIT_EXCEEDED, limit=deal.per_user_limit, held=held)
        if self.key_race is not None and order.idempotency_key:
            self._write(self.key_race, order.idempotency_key)
            self.key_race = None
            return TakeAnswer(Taken.KEY_TAKEN)
        if deal is None:
            self.products[product.id] = replace(product, stock=product.stock - order.quantity)
        else:
            deal.remaining_stock -= order.quantity
        now = self.clock()
        deal_id = None if deal is None else deal.id
        view = OrderView(order.order_id, order.product_id, deal_id, order.user_id,
                         order.quantity, product.price, OrderStatus.PENDING, None,
                         now + timedelta(seconds=order.ttl_seconds), now, now)
        self._write(view, order.idempotency_key)
        await self.add_event(self._placed(view))
        return TakeAnswer(Taken.PLACED, view)

    async def order(self, order_id: UUID) -> OrderView | None:
        return self.orders.get(order_id)

    async def order_by_key(self, user_id: str, key: str) -> OrderView | None:
        return self._by_key(user_id, key)

    async def add_event(self, event: AnyEvent) -> None:
        self.outbox.append(FakeEvent(self.topics.of(event), event_key(event), event, None))

    async def create_product(self, name: str, price: int, stock: int) -> int:
        self._ids += 1
        self.products[self._ids] = Product(self._ids, name, price, stock)
        return self._ids

    async def product(self, product_id: int) -> tuple[Product, LiveDeal | None] | None:
        product = self.products.get(product_id)
        if product is None:
            return None
        d = self._live_deal(product_id)
        return product, None if d is None else LiveDeal(
            d.id, d.status, d.stock_backend, d.initial_stock, d.per_user_limit,
            d.remaining_stock, d.epoch, None)

    async def live_redis_deals(self) -> list[tuple[int, int]]:
        return [(d.id, d.product_id) for d in self.deals.values()
                if d.status == DealStatus.ACTIVE and d.stock_backend == StockBackend.REDIS]

    async def order_states(self, order_ids: list[UUID]) -> dict[UUID, OrderState]:
        return {o: OrderState(self.orders[o].status, self.orders[o].expires_at)
                for o in order_ids if o in self.orders}

    async def void_orphan(self, deal_id: int, product_id: int, order_id: UUID, user_id: str,
                          quantity: int) -> bool:
        if order_id in self.orders:
            return False
        now = self.clock()
        self._write(OrderView(order_id, product_id, deal_id, user_id, quantity,
                              self.products[product_id].price, OrderStatus.CANCELLED,
                              CancelReason.ORPHANED, now, now, now), None)
        return True

    def _live_deal(self, product_id: int) -> FakeDeal | None:
        return next((d for d in self.deals.values()
                     if d.product_id == product_id and d.status in LIVE), None)

    def _by_key(self, user_id: str, key: str) -> OrderView | None:
        found = self._keys.get((user_id, key))
        return None if found is None else self.orders[found]

    def _write(self, order: OrderView, key: str | None) -> None:
        self.orders[order.id] = order
        if key:
            self._keys[(order.user_id, key)] = order.id

    def _unwrite(self, order_id: UUID) -> None:
        order = self.orders.pop(order_id, None)
        if order is not None:
            for k in [k for k, v in self._keys.items() if v == order_id]:
                del self._keys[k]
            self.outbox = [e for e in self.outbox if e.key != str(order_id)]

    @staticmethod
    def _placed(order: OrderView) -> OrderPlaced:
        return OrderPlaced(order_id=order.id, product_id=order.product_id,
                           hot_deal_id=order.hot_deal_id, user_id=order.user_id,
                           quantity=order.quantity, unit_price=order.unit_price,
                           expires_at=order.expires_at)


def outbox_json(row: OutboxRow) -> dict[str, object]:
    """A handed row's payload as a dict (the fake hands JSON text, Postgres a dict)."""
    payload = row.payload
    return json.loads(payload) if isinstance(payload, str) else dict(payload)
