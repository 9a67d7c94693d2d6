"""Event contracts: every event carries `event_id`, `type`, `occurred_at`, `version`.
Topics and keys: docs/events.md."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal
from uuid import UUID, uuid4

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, TypeAdapter

ORDERS_TOPIC = "orders.v1"
ORDER_REQUESTS_TOPIC = "order-requests.v1"
PAYMENTS_TOPIC = "payments.v1"
HOTDEALS_TOPIC = "hotdeals.v1"
DEAD_LETTER_TOPIC = "hotdeal.dlq.v1"


def _now() -> datetime:
    return datetime.now(UTC)


class Event(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    event_id: UUID = Field(default_factory=uuid4)
    occurred_at: AwareDatetime = Field(default_factory=_now)
    version: Literal[1] = 1


# ---------------------------------------------------------------- orders.v1 (key: order id)
class OrderPlaced(Event):
    type: Literal["OrderPlaced"] = "OrderPlaced"
    order_id: UUID
    product_id: int
    hot_deal_id: int | None
    user_id: str
    quantity: int
    unit_price: int
    expires_at: AwareDatetime


class OrderConfirmationRequested(Event):
    """An internal caller asked to confirm without a payment callback."""

    type: Literal["OrderConfirmationRequested"] = "OrderConfirmationRequested"
    order_id: UUID


class OrderCancellationRequested(Event):
    """The buyer asked to cancel a pending order."""

    type: Literal["OrderCancellationRequested"] = "OrderCancellationRequested"
    order_id: UUID
    reason: Literal["user_cancelled"] = "user_cancelled"


class OrderConfirmed(Event):
    type: Literal["OrderConfirmed"] = "OrderConfirmed"
    order_id: UUID
    product_id: int
    hot_deal_id: int | None
    user_id: str
    quantity: int
    payment_id: str | None


class OrderCancelled(Event):
    type: Literal["OrderCancelled"] = "OrderCancelled"
    order_id: UUID
    product_id: int
    hot_deal_id: int | None
    user_id: str
    quantity: int
    reason: str
    # Where the units went back: "redis" (deal stock), "db" (Postgres), "deferred" (the
    # deal's state is closed or being rebuilt: the flush or the rebuild accounts for them).
    stock_released_to: Literal["redis", "db", "deferred"]


OrderEvent = Annotated[
    OrderPlaced | OrderConfirmed | OrderCancelled, Field(discriminator="type")
]

# order-requests.v1 (key: order id): what the stock worker is asked to do. Kept apart from
# orders.v1 so that the worker does not read (and commit) every order event to skip it.
OrderRequest = Annotated[
    OrderConfirmationRequested | OrderCancellationRequested, Field(discriminator="type")
]


# ---------------------------------------------------------------- payments.v1 (key: order id)
class PaymentSucceeded(Event):
    type: Literal["PaymentSucceeded"] = "PaymentSucceeded"
    order_id: UUID
    payment_id: str
    amount: int


class PaymentFailed(Event):
    type: Literal["PaymentFailed"] = "PaymentFailed"
    order_id: UUID
    payment_id: str
    amount: int


class RefundRequested(Event):
    """Give a successful payment back. `reason`: order_cancelled (paid after the order was
    cancelled), duplicate_payment (the order is confirmed by another payment),
    amount_mismatch (not the order's total), order_not_found (no such order)."""

    type: Literal["RefundRequested"] = "RefundRequested"
    order_id: UUID
    payment_id: str
    amount: int
    reason: str


PaymentEvent = Annotated[
    PaymentSucceeded | PaymentFailed | RefundRequested, Field(discriminator="type")
]


# ---------------------------------------------------------------- hotdeals.v1 (key: product id)
class HotDealStarted(Event):
    type: Literal["HotDealStarted"] = "HotDealStarted"
    hot_deal_id: int
    product_id: int
    stock: int
    per_user_limit: int
    stock_backend: Literal["redis", "db"]
    ends_at: AwareDatetime | None


class HotDealEnded(Event):
    type: Literal["HotDealEnded"] = "HotDealEnded"
    hot_deal_id: int
    product_id: int
    reason: Literal["stopped", "duration_over"] = "stopped"


class HotDealReconciled(Event):
    type: Literal["HotDealReconciled"] = "HotDealReconciled"
    hot_deal_id: int
    product_id: int
    initial_stock: int
    returned_stock: int
    pending_units: int
    confirmed_units: int
    balanced: bool


HotDealEvent = Annotated[
    HotDealStarted | HotDealEnded | HotDealReconciled, Field(discriminator="type")
]

order_event_adapter: TypeAdapter[OrderEvent] = TypeAdapter(OrderEvent)
order_request_adapter: TypeAdapter[OrderRequest] = TypeAdapter(OrderRequest)
payment_event_adapter: TypeAdapter[PaymentEvent] = TypeAdapter(PaymentEvent)
hotdeal_event_adapter: TypeAdapter[HotDealEvent] = TypeAdapter(HotDealEvent)

AnyEvent = (
    OrderPlaced | OrderConfirmationRequested | OrderCancellationRequested | OrderConfirmed
    | OrderCancelled | PaymentSucceeded | PaymentFailed | RefundRequested
    | HotDealStarted | HotDealEnded | HotDealReconciled
)

TOPIC_OF: dict[str, str] = {
    **{t: ORDERS_TOPIC for t in ("OrderPlaced", "OrderConfirmed", "OrderCancelled")},
    **{t: ORDER_REQUESTS_TOPIC for t in ("OrderConfirmationRequested",
                                         "OrderCancellationRequested")},
    **{t: PAYMENTS_TOPIC for t in ("PaymentSucceeded", "PaymentFailed", "RefundRequested")},
    **{t: HOTDEALS_TOPIC for t in ("HotDealStarted", "HotDealEnded", "HotDealReconciled")},
}


class DeadLetter(BaseModel):
    """What the dead-letter topic carries: the raw message and why it was refused."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    source_topic: str
    partition: int
    offset: int
    key: str | None
    reason: str
    raw: str
    consumer: str
    occurred_at: AwareDatetime = Field(default_factory=_now)
