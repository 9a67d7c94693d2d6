"""The settlement's port: the order, deal, payment and outbox rows that settling and
recording payments read and write, one transaction at a time."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import NamedTuple, Protocol
from uuid import UUID

from hotdeal_core.messaging.outbox import OutboxRow
from schemas.events import AnyEvent


@dataclass(slots=True)
class LockedOrder:
    """An order row as locked, and what the batch makes of it."""

    id: UUID
    product_id: int
    deal_id: int | None
    user_id: str
    quantity: int
    status: str
    payment_id: str | None
    paid: bool  # paid in time (see settlement_plan.in_time)
    was: tuple[str, str | None] = ("", None)  # (status, payment_id) as read: the CAS
    cancel_reason: str | None = None


class DealState(NamedTuple):
    """The deal of an order the batch cancels, read under its shared fence."""

    id: int
    status: str
    stock_backend: str


@dataclass(frozen=True, slots=True)
class PaymentFact:
    """One payment callback as recorded: (payment_id, status) is the fact's identity."""

    payment_id: str
    order_id: UUID
    status: str
    amount: int
    outcome: str


class SettlementTx(Protocol):
    """One transaction: committed when its block exits, rolled back if it raises."""

    async def record_first_times(self, consumer: str, event_ids: Sequence[UUID]
                                 ) -> set[UUID]:
        """Record the event ids `consumer` applies; returns those it had not seen."""

    async def fence_deals_of(self, order_ids: Sequence[UUID]) -> dict[int, DealState]:
        """Share the fence of these orders' deals (in deal id order), then read them."""

    async def lock_orders(self, order_ids: Sequence[UUID]) -> dict[UUID, LockedOrder]:
        """Lock these orders (in id order); the missing ones are absent."""

    async def cas_order_status(self, changed: Sequence[LockedOrder]) -> int:
        """Move each order from its `was` to its (status, payment_id, cancel_reason);
        returns how many moved."""

    async def give_back(self, product_units: Mapping[int, int],
                        returned_units: Mapping[int, int],
                        remaining_units: Mapping[int, int]) -> None:
        """Units back to products' stock, deals' returned_stock and remaining_stock."""

    async def add_events(self, events: Sequence[AnyEvent], *, claim: bool,
                         headers: Sequence[dict[str, str] | None] | None = None,
                         ) -> list[OutboxRow]:
        """Write outbox rows (`claim`: born claimed by this process's relay)."""

    async def order_totals(self, order_ids: Sequence[UUID]) -> dict[UUID, int]:
        """What each existing order costs (quantity times unit price)."""

    async def record_payment_facts(self, facts: Sequence[PaymentFact]
                                   ) -> set[tuple[str, str]]:
        """Insert the facts not recorded yet; returns their (payment_id, status)."""

    async def mark_paid_in_time(self, order_ids: Sequence[UUID]) -> None:
        """Mark paid those orders a payment now finds in time (settlement_plan.in_time)."""

    async def first_outcomes(self, payment_ids: Sequence[str]
                             ) -> dict[tuple[str, str], str]:
        """The outcome each recorded fact of these payment ids got."""


class SettlementDb(Protocol):
    def transaction(self) -> AbstractAsyncContextManager[SettlementTx]: ...

    async def claim_due_orders(self, limit: int) -> list[UUID]:
        """PENDING orders past their reservation and not paid in time, oldest first."""
