"""What one settlement batch makes of each order, decided in memory before anything is
written (`settlement.py` reads the rows, then writes the plan), and "paid in time"."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal
from uuid import UUID

from hotdeal_core.domain import (
    CancelReason,
    DealStatus,
    OrderStatus,
    StockBackend,
    can_transition,
)
from hotdeal_core.ports.settlement import DealState, LockedOrder
from schemas.events import AnyEvent, OrderCancelled, OrderConfirmed, RefundRequested

__all__ = ["Cancel", "Command", "Confirm", "DealState", "LockedOrder", "Plan",
           "SettleResult", "apply_command", "due_to_expire", "in_time", "marks_paid"]


Outcome = Literal["applied", "already_processed", "not_found", "no_change"]


@dataclass(frozen=True, slots=True)
class SettleResult:
    outcome: Outcome
    status: str | None = None


@dataclass(frozen=True, slots=True)
class Confirm:
    """Confirm a PENDING order: a successful payment (`payment_id`) or an admin (None)."""

    order_id: UUID
    payment_id: str | None = None
    amount: int | None = None
    event_id: UUID | None = None


@dataclass(frozen=True, slots=True)
class Cancel:
    order_id: UUID
    reason: CancelReason
    event_id: UUID | None = None


Command = Confirm | Cancel


@dataclass
class Plan:
    """Everything one batch writes, gathered before the statements that write it."""

    results: list[SettleResult] = field(default_factory=list)
    events: list[AnyEvent] = field(default_factory=list)
    product_units: Counter[int] = field(default_factory=Counter)  # back to products.stock
    returned_units: Counter[int] = field(default_factory=Counter)  # deal: returned_stock
    remaining_units: Counter[int] = field(default_factory=Counter)  # db deal: remaining
    release: dict[UUID, int] = field(default_factory=dict)  # order -> product, after commit
    forget: dict[UUID, int] = field(default_factory=dict)


# "Paid in time is never expired": these three functions here, the same rule in SQL in
# hotdeal_core/db/settlement_rules.py (the settlement contract suite holds them together).
def in_time(expires_at: datetime, at: datetime) -> bool:
    """A payment made `at` is in time: the reservation has not expired (`expires_at` included)."""
    return at <= expires_at


def marks_paid(status: str, paid: bool, expires_at: datetime, at: datetime) -> bool:
    """A successful payment of the right amount made `at` marks the order paid in time,
    after which it can only be confirmed (`domain.can_transition(paid=True)`)."""
    return status == OrderStatus.PENDING and not paid and in_time(expires_at, at)


def due_to_expire(status: str, paid: bool, expires_at: datetime, at: datetime) -> bool:
    """The sweeper may cancel the order: PENDING, and no payment can mark it any more."""
    return status == OrderStatus.PENDING and not paid and not in_time(expires_at, at)


def apply_command(plan: Plan, command: Command, order: LockedOrder | None,
                  deals: dict[int, DealState]) -> SettleResult:
    if order is None:
        return SettleResult("not_found")
    if isinstance(command, Confirm):
        return _confirm(plan, command, order)
    if not can_transition(OrderStatus(order.status), OrderStatus.CANCELLED, paid=order.paid):
        # A paid order is never cancelled (a declined attempt applied late, an expiry, a
        # buyer's cancel): the webhook marks paid_at under the row lock this batch holds, so
        # what was read is what is committed.
        return SettleResult("no_change", order.status)
    order.status, order.cancel_reason = OrderStatus.CANCELLED, command.reason
    released_to = _give_back(plan, order, deals)
    if released_to == "redis":
        plan.release[order.id] = order.product_id
    plan.events.append(OrderCancelled(
        order_id=order.id, product_id=order.product_id, hot_deal_id=order.deal_id,
        user_id=order.user_id, quantity=order.quantity, reason=command.reason,
        stock_released_to=released_to))
    return SettleResult("applied", OrderStatus.CANCELLED)


def _confirm(plan: Plan, command: Confirm, order: LockedOrder) -> SettleResult:
    if can_transition(OrderStatus(order.status), OrderStatus.CONFIRMED):
        order.status, order.payment_id = OrderStatus.CONFIRMED, command.payment_id
        if order.deal_id is not None:  # the units stay sold; only the reservation record goes
            plan.forget[order.id] = order.product_id
        plan.events.append(OrderConfirmed(
            order_id=order.id, product_id=order.product_id, hot_deal_id=order.deal_id,
            user_id=order.user_id, quantity=order.quantity, payment_id=command.payment_id))
        return SettleResult("applied", OrderStatus.CONFIRMED)
    if command.payment_id is not None and (refund := _refund_reason(order, command.payment_id)):
        # Never lose the money: a payment that cannot settle the order goes back.
        plan.events.append(RefundRequested(order_id=order.id, payment_id=command.payment_id,
                                           amount=command.amount or 0, reason=refund))
    return SettleResult("no_change", order.status)


def _refund_reason(order: LockedOrder, payment_id: str) -> str | None:
    """Why a successful payment of an order that is no longer PENDING is refunded, if it is."""
    if order.status == OrderStatus.CANCELLED:
        return "order_cancelled"  # paid too late (the reservation expired) or cancelled
    if order.payment_id is None:
        # Confirmed without a payment (admin): the first payment is the order's, keep it.
        order.payment_id = payment_id
        return None
    return None if order.payment_id == payment_id else "duplicate_payment"


def _give_back(plan: Plan, order: LockedOrder, deals: dict[int, DealState]
               ) -> Literal["redis", "db", "deferred"]:
    if order.deal_id is None:
        plan.product_units[order.product_id] += order.quantity
        return "db"
    deal = deals[order.deal_id]
    if deal.status == DealStatus.RECONCILED:
        plan.product_units[order.product_id] += order.quantity
        plan.returned_units[order.deal_id] += order.quantity
        return "db"
    if deal.stock_backend == StockBackend.DB:
        plan.remaining_units[order.deal_id] += order.quantity
        return "db"
    return "redis" if deal.status == DealStatus.ACTIVE else "deferred"
