"""The stock store port: where a hot deal's live stock is held while the deal runs.

`RedisStockStore` (Lua scripts, one hash tag per deal so the keys of a deal share a Redis
Cluster slot) is the production adapter; `FakeStockStore` is the in-memory one for unit
tests. Both follow the same rules:

- `reserve` is one atomic step: deal open? idempotency key already used by this user?
  enough stock? under the per-user limit? then decrement and record the reservation under
  the order id. A missing deal is `NOT_ACTIVE`, never an error.
- `release` returns an order's units exactly once: the reservation record is the token.
  Its idempotency record goes with it (a retry with that key is served anew). It refuses
  (`NOT_OPEN`) once the deal is closed or its state is gone; the flush or the rebuild then
  accounts for those units from Postgres. `forget` (a confirmed order) drops the
  reservation record only: the units stay sold and the key keeps its first answer.
  `release_many` / `forget_many` do the same for many (product id, order id) pairs in one
  round trip (the stock worker settles in batches), with one outcome per pair, in order;
  a pair given twice is released (or dropped) once, the second gets `NO_RESERVATION`.
- Reads cost what they return: `peek` is the status and stock in one read, `due` the
  reservations whose grace period started at least `grace_ms` ago (a sorted set by time, so
  the orphan sweep never reads every live reservation), `reschedule` starts that period
  again for reservations whose order is known. `snapshot` reads everything (the flush,
  the audit).
- One clock: `reserve` stamps a reservation with the store's own clock (Redis `TIME`), and
  `due` judges "ago" by that same clock and returns its reading (`now_ms`), never a host's.
- The opening window (`open(..., opening_window_ms)`): until it ends by the store's clock,
  `reserve` enters each buyer once into a draw (`ENTERED`, with a random ticket; another
  request of an entered buyer is `ALREADY_ENTERED` unless it repeats the entry's key); the
  first call after the end reserves for every entrant in ticket order, and `drawn` returns
  each entrant's outcome. Nothing is reserved, and no unit moves, before the draw.
- `open` never overwrites a live state; `close` stops every reservation and release;
  `drop` deletes keys only of the deal that owns them; `rebuild` replaces the state with
  one recomputed from Postgres unless an equal or newer epoch is already there.
"""

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
                      idempotency_key: str | None) -> ReserveResult: ...

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

    async def release(self, product_id: int, order_id: UUID) -> ReleaseOutcome: ...

    async def key_used(self, product_id: int, user_id: str, key: str) -> bool:
        """Whether this buyer's idempotency key holds a reservation's first answer (one
        read; lets a sold-out deal refuse a new key without the reservation script)."""
        ...

    async def forget(self, product_id: int, order_id: UUID) -> bool: ...

    async def release_many(self, items: Sequence[tuple[int, UUID]]) -> list[ReleaseOutcome]:
        """`release` for each (product id, order id); one outcome per item, in order."""
        ...

    async def forget_many(self, items: Sequence[tuple[int, UUID]]) -> list[bool]:
        """`forget` for each (product id, order id); one result per item, in order."""
        ...

    async def drawn(self, product_id: int, buyers: Sequence[str]) -> Drawn:
        """The opening draw's answers for `buyers`, the draw run first if it is due."""
        ...

    async def open(self, product_id: int, deal_id: int, stock: int, per_user_limit: int,
                   epoch: int, unit_price: int, opening_window_ms: int = 0) -> bool:
        """Open the deal; with `opening_window_ms` > 0 its orders enter a draw until then."""
        ...

    async def close(self, product_id: int, deal_id: int) -> bool: ...

    async def snapshot(self, product_id: int) -> DealSnapshot: ...

    async def peek(self, product_id: int) -> DealSnapshot:
        """Status, epoch, deal and stock; `reservations` is always empty."""
        ...

    async def due(self, product_id: int, grace_ms: int, limit: int) -> DueReservations: ...

    async def reschedule(self, product_id: int, since_ms: dict[UUID, int]) -> int: ...

    async def drop(self, product_id: int, deal_id: int) -> bool: ...

    async def rebuild(self, product_id: int, state: RebuiltState) -> bool: ...
