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
# A deal's opening window (its first seconds, drawn at random) is at most this long.
MAX_OPENING_WINDOW_SECONDS = 60

_TRANSITIONS: dict[OrderStatus, frozenset[OrderStatus]] = {
    OrderStatus.PENDING: frozenset({OrderStatus.CONFIRMED, OrderStatus.CANCELLED}),
    OrderStatus.CONFIRMED: frozenset(),
    OrderStatus.CANCELLED: frozenset(),
}


def can_transition(current: OrderStatus, target: OrderStatus, *, paid: bool = False) -> bool:
    """`paid`: a successful payment was accepted while the order was PENDING and before its
    `expires_at`; such an order can only be confirmed, whatever order events arrive in."""
    if paid and target is OrderStatus.CANCELLED:
        return False
    return target in _TRANSITIONS[current]
