"""HTTP API contracts. Unknown fields are refused (422); numbers are strict (no "5" for 5)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, StrictInt

# Ids and amounts are Postgres BIGINTs (< 2**63): a larger number cannot even be sent as a
# query parameter. Used as `lt=`: the OpenAPI document holds numbers as floats, and 2**63 is
# one exactly (2**63 - 1 is not).
BIGINT_LIMIT = 2**63
UserId = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.:@-]+$")]
ProductId = Annotated[StrictInt, Field(ge=1, lt=BIGINT_LIMIT)]
MAX_ORDER_QUANTITY = 100
# The Idempotency-Key header of POST /orders: 1 to 128 printable ASCII characters, no space.
IDEMPOTENCY_KEY_MAX = 128
IDEMPOTENCY_KEY_PATTERN = r"^[\x21-\x7e]+$"
IdempotencyKey = Annotated[str, Field(min_length=1, max_length=IDEMPOTENCY_KEY_MAX,
                                      pattern=IDEMPOTENCY_KEY_PATTERN)]
MAX_OPENING_WINDOW_SECONDS = 60  # hotdeal_core.domain's (a test keeps them equal)


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


# The buyer is the bearer token's `sub`; a `user_id` in a body is optional and must name
# the same buyer (403 `buyer_mismatch` otherwise, order_api/buyers.py).
class PlaceOrderRequest(_Request):
    product_id: ProductId
    user_id: UserId | None = None
    quantity: Annotated[StrictInt, Field(ge=1, le=MAX_ORDER_QUANTITY)]


class CancelOrderRequest(_Request):
    user_id: UserId | None = None


class PaymentWebhookRequest(_Request):
    # Any text but NUL, which a Postgres text cannot hold.
    payment_id: Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[^\x00]+$")]
    order_id: UUID
    status: Literal["succeeded", "failed"]
    amount: Annotated[StrictInt, Field(ge=0, lt=BIGINT_LIMIT)]


class StartDealRequest(_Request):
    stock: Annotated[StrictInt, Field(ge=1, le=10_000_000)]
    per_user_limit: Annotated[StrictInt, Field(ge=1, le=1000)] = 1
    duration_seconds: Annotated[float, Field(gt=0, le=30 * 86400)] | None = None
    # The orders of the deal's first seconds enter a random draw held when they end (one
    # entry per buyer); unset: DEAL_OPENING_WINDOW_SECONDS (3 s by default); 0: none.
    opening_window_seconds: Annotated[float, Field(
        ge=0, le=MAX_OPENING_WINDOW_SECONDS)] | None = None


class OrderResponse(BaseModel):
    order_id: UUID
    status: Literal["PENDING", "CONFIRMED", "CANCELLED"]
    product_id: int
    hot_deal_id: int | None
    user_id: str
    quantity: int
    unit_price: int
    total: int
    cancel_reason: str | None
    expires_at: datetime
    created_at: datetime
    updated_at: datetime


class PaymentWebhookResponse(BaseModel):
    payment_id: str
    outcome: str
    duplicate: bool


class DealResponse(BaseModel):
    hot_deal_id: int
    status: str
    stock_backend: str
    initial_stock: int
    per_user_limit: int
    remaining: int | None
    epoch: int
    ends_at: datetime | None


class ProductResponse(BaseModel):
    product_id: int
    name: str
    price: int
    stock: int
    deal: DealResponse | None


class StartDealResponse(BaseModel):
    hot_deal_id: int
    product_id: int
    stock: int
    per_user_limit: int
    stock_backend: str
    ends_at: datetime | None
    opening_window_seconds: float


class EndDealResponse(BaseModel):
    hot_deal_id: int
    product_id: int
    ended_now: bool


class ErrorDetail(BaseModel):
    code: str
    message: str
    details: list[dict[str, Any]] | None = None


class ErrorResponse(BaseModel):
    error: ErrorDetail
