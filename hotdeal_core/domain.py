"""Behaviour models and rules: plain Python, no I/O."""

from __future__ import annotations

from enum import StrEnum


class OrderStatus(StrEnum):
    PENDING = "PENDING"
    CONFIRMED = "CONFIRMED"
    CANCELLED = "CANCELLED"


class DealStatus(StrEnum):
    SCHEDULED = "SCHEDULED"
    ACTIVE = "ACTIVE"
    ENDED = "ENDED"
    RECONCILED = "RECONCILED"


class StockBackend(StrEnum):
    REDIS = "redis"
    DB = "db"


class CancelReason(StrEnum):
    PAYMENT_FAILED = "payment_failed"
    USER_CANCELLED = "user_cancelled"
    EXPIRED = "expired"
    ORPHANED = "orphaned"


# A live deal blocks starting another one on the same product.
LIVE_DEAL_STATUSES = (DealStatus.SCHEDULED, DealStatus.ACTIVE, DealStatus.ENDED)

_TRANSITIONS: dict[OrderStatus, frozenset[OrderStatus]] = {
    OrderStatus.PENDING: frozenset({OrderStatus.CONFIRMED, OrderStatus.CANCELLED}),
    OrderStatus.CONFIRMED: frozenset(),
    OrderStatus.CANCELLED: frozenset(),
}


def can_transition(current: OrderStatus, target: OrderStatus) -> bool:
    return target in _TRANSITIONS[current]
