"""The orders port: what placing, reading and sweeping orders need from Postgres
(adapter: hotdeal_core/db/orders.py; fake: tests/fakes/orders.py)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from typing import NamedTuple, Protocol
from uuid import UUID

from hotdeal_core.batching import OutcomeUnknown
from hotdeal_core.messaging.outbox import OutboxRow
from hotdeal_core.usecases.views import OrderView
from schemas.events import AnyEvent

# Hands rows born claimed by this process to its relay, after their commit.
PublishNow = Callable[[list[OutboxRow]], None]


@dataclass(frozen=True, slots=True)
class ReservedOrder:
    """An order whose units are reserved in Redis, for the group commit."""

    order_id: UUID
    product_id: int
    deal_id: int
    epoch: int
    user_id: str
    quantity: int
    unit_price: int
    idempotency_key: str | None
    ttl_seconds: int  # the order expires this long after its transaction's now()
    topic: str  # of its OrderPlaced event
    headers: dict[str, str] | None = None  # its request's trace context, for its outbox row


class Fenced(Exception):
    """The deal ended or was rebuilt between the reservation and the order's write."""


class NotWritten(Exception):
    """The order id or the idempotency key is already taken."""


class CommitUnknown(OutcomeUnknown):
    """The commit failed on the way: the orders may or may not be written."""

    def __init__(self) -> None:
        super().__init__("postgres", "the order's outcome is unknown; retry with the same "
                                     "Idempotency-Key")


@dataclass(frozen=True, slots=True)
class NewOrder:
    """An order whose stock Postgres takes (an ordinary product, or a deal kept in the db)."""

    order_id: UUID
    product_id: int
    user_id: str
    quantity: int
    idempotency_key: str | None
    ttl_seconds: int


class Taken(Enum):
    """What taking stock in Postgres answered."""

    PLACED = "placed"  # `order` written with its OrderPlaced event
    REPLAYED = "replayed"  # `order`: the one this idempotency key already placed
    KEY_TAKEN = "key_taken"  # a concurrent request with the same key won the insert
    NO_PRODUCT = "no_product"
    NOT_ACTIVE = "not_active"  # the live deal is not ACTIVE, or its stock is in Redis
    SOLD_OUT = "sold_out"
    LIMIT_EXCEEDED = "limit_exceeded"  # `limit`, `held`: the per-user limit, units held


@dataclass(frozen=True, slots=True)
class TakeAnswer:
    outcome: Taken
    order: OrderView | None = None
    limit: int = 0
    held: int = 0


class LiveDeal(NamedTuple):
    """The columns of a live deal's row that its readers use."""

    id: int
    status: str
    stock_backend: str
    initial_stock: int
    per_user_limit: int
    remaining_stock: int
    epoch: int
    ends_at: datetime | None


@dataclass(frozen=True, slots=True)
class Product:
    id: int
    name: str
    price: int
    stock: int


@dataclass(frozen=True, slots=True)
class OrderState:
    status: str
    expires_at: datetime


class OrdersDb(Protocol):
    async def write_reserved_orders(self, items: list[ReservedOrder],
                                    publish_now: PublishNow | None,
                                    ) -> list[OrderView | BaseException]:
        """One transaction, one outcome per item: its order, `Fenced` (deal not ACTIVE at
        its epoch) or `NotWritten` (id or key taken); raises `CommitUnknown`."""

    async def take_stock_and_place(self, order: NewOrder) -> TakeAnswer:
        """Decrement the stock and write the order and its event, in one transaction."""

    async def order(self, order_id: UUID) -> OrderView | None: ...

    async def order_by_key(self, user_id: str, key: str) -> OrderView | None: ...

    async def add_event(self, event: AnyEvent) -> None:
        """Record `event` in the outbox alone (a request for the stock worker)."""

    async def create_product(self, name: str, price: int, stock: int) -> int: ...

    async def product(self, product_id: int) -> tuple[Product, LiveDeal | None] | None:
        """The product and its live deal, read together."""

    async def live_redis_deals(self) -> list[tuple[int, int]]:
        """(deal id, product id) of every ACTIVE deal whose stock is in Redis."""

    async def order_states(self, order_ids: list[UUID]) -> dict[UUID, OrderState]: ...

    async def void_orphan(self, deal_id: int, product_id: int, order_id: UUID, user_id: str,
                          quantity: int) -> bool:
        """Write the order id as CANCELLED (orphaned) unless it exists; True if written."""
