"""The stock store port: where a hot deal's live stock is held while the deal runs.
`RedisStockStore` (Lua) and `FakeStockStore` (in memory) pass the same contract suite
(tests/integration/test_stock_contract.py); each method's docstring states its rule."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Protocol
from uuid import UUID

from hotdeal_core.errors import DependencyUnavailable


class NotSent(DependencyUnavailable):
    """A call that never reached Redis (its node refused the connection, its slot is moving
    or has no master): sending it again cannot run it twice."""

    def __init__(self, detail: str) -> None:
        super().__init__("redis", f"the deal's Redis node is changing ({detail}); retry")


class ReserveOutcome(IntEnum):
    RESERVED = 1
    DUPLICATE = 2
    SOLD_OUT = 0
    NOT_ACTIVE = -1
    LIMIT_EXCEEDED = -2
    ENTERED = 3  # in the deal's opening draw: its answer comes from `drawn` at the draw
    ALREADY_ENTERED = -3  # the buyer entered the draw with another request


class ReleaseOutcome(IntEnum):
    RELEASED = 1
    NO_RESERVATION = 0
    NOT_OPEN = -1


@dataclass(frozen=True, slots=True)
class ReserveResult:
    outcome: ReserveOutcome
    epoch: int = 0
    remaining: int = 0
    deal_id: int = 0
    unit_price: int = 0
    first_order_id: UUID | None = None
    held: int = 0
    limit: int = 0
    wait_ms: int = 0  # ENTERED / ALREADY_ENTERED: until the draw, by the store's clock


@dataclass(frozen=True, slots=True)
class Reservation:
    order_id: UUID
    user_id: str
    quantity: int
    reserved_at_ms: int
    idempotency_key: str


@dataclass(frozen=True, slots=True)
class DealSnapshot:
    status: str | None  # "open", "closed" or None (no state)
    epoch: int
    deal_id: int
    stock: int
    reservations: list[Reservation] = field(default_factory=list)

    @property
    def reserved_units(self) -> int:
        return sum(r.quantity for r in self.reservations)


@dataclass(frozen=True, slots=True)
class RebuiltState:
    """A deal's Redis state recomputed from Postgres (see usecases.recovery.recover_deal)."""

    deal_id: int
    stock: int
    per_user_limit: int
    epoch: int
    unit_price: int
    users: dict[str, int]
    reservations: list[Reservation]
    idempotency: dict[tuple[str, str], UUID]


@dataclass(frozen=True, slots=True)
class DueReservations:
    status: str | None
    deal_id: int
    reservations: list[Reservation]
    now_ms: int  # the store's clock when it read them


@dataclass(frozen=True, slots=True)
class Drawn:
    """The opening draw's answers: `wait_ms` > 0 while it is not due (then no answers);
    per buyer the entry's order id and its reservation outcome, None without an entry."""
    wait_ms: int
    answers: dict[str, tuple[UUID, ReserveResult] | None]


@dataclass(frozen=True, slots=True)
class ReserveRequest:
    order_id: UUID
    user_id: str
    quantity: int
    idempotency_key: str | None = None


class StockStore(Protocol):
    async def reserve(self, product_id: int, order_id: UUID, user_id: str, quantity: int,
                      idempotency_key: str | None) -> ReserveResult:
        """One atomic step: deal open, idempotency key, stock, per-user limit, then decrement and
        record the reservation (stamped by the store's clock). A missing deal is `NOT_ACTIVE`.
        Inside the opening window the buyer is entered into the draw once instead."""
        ...

    async def reserve_many(self, product_id: int, requests: list[ReserveRequest],
                           ) -> list[ReserveResult]:
        """Several reservations of one deal in one atomic step, applied in order: the same
        outcomes as as many `reserve` calls in a row."""
        ...

    async def reserve_groups(self, groups: Sequence[tuple[int, list[ReserveRequest]]],
                             ) -> list[list[ReserveResult] | BaseException]:
        """`reserve_many` for several deals at once (one batch of the order API), one
        outcome per deal, in order: its results, or the error of that deal's call alone."""
        ...

    async def release(self, product_id: int, order_id: UUID) -> ReleaseOutcome:
        """Give an order's units back exactly once (the reservation record is the token), with its
        idempotency record; `NOT_OPEN` once the deal is closed or gone (the flush counts them)."""
        ...

    async def key_used(self, product_id: int, user_id: str, key: str) -> bool:
        """Whether this buyer's idempotency key holds a reservation's first answer (one
        read; lets a sold-out deal refuse a new key without the reservation script)."""
        ...

    async def forget(self, product_id: int, order_id: UUID) -> bool:
        """Drop a confirmed order's reservation record only: its units stay sold and its key keeps
        its first answer."""
        ...

    async def release_many(self, items: Sequence[tuple[int, UUID]]) -> list[ReleaseOutcome]:
        """`release` for each (product id, order id) in one round trip; one outcome per item, in
        order (an item given twice: the second gets `NO_RESERVATION`)."""
        ...

    async def forget_many(self, items: Sequence[tuple[int, UUID]]) -> list[bool]:
        """`forget` for each (product id, order id); one result per item, in order."""
        ...

    async def drawn(self, product_id: int, buyers: Sequence[str]) -> Drawn:
        """The opening draw's answers for `buyers`, the draw run first if it is due."""
        ...

    async def open(self, product_id: int, deal_id: int, stock: int, per_user_limit: int,
                   epoch: int, unit_price: int, opening_window_ms: int = 0) -> bool:
        """Open the deal, never over a live state. With `opening_window_ms` > 0, `reserve` enters
        each buyer once until then; the first call after it reserves for every entrant in ticket
        order (nothing moves before the draw)."""
        ...

    async def close(self, product_id: int, deal_id: int) -> bool:
        """Stop every reservation and release of the deal."""
        ...

    async def snapshot(self, product_id: int) -> DealSnapshot:
        """Everything, every live reservation included (the flush, the audit)."""
        ...

    async def peek(self, product_id: int) -> DealSnapshot:
        """Status, epoch, deal and stock; `reservations` is always empty."""
        ...

    async def due(self, product_id: int, grace_ms: int, limit: int) -> DueReservations:
        """The reservations whose grace period started at least `grace_ms` ago by the store's clock,
        and that clock's reading (`now_ms`); never every live reservation."""
        ...

    async def reschedule(self, product_id: int, since_ms: dict[UUID, int]) -> int:
        """Start the grace period again for reservations whose order is known."""
        ...

    async def drop(self, product_id: int, deal_id: int) -> bool:
        """Delete the deal's keys, only if this deal owns them."""
        ...

    async def rebuild(self, product_id: int, state: RebuiltState) -> bool:
        """Replace the state with one recomputed from Postgres, unless an equal or newer epoch is
        already there."""
        ...
