"""In-memory stock store with the same rules as the Lua scripts, for unit tests."""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from uuid import UUID

from hotdeal_core.stock.port import (
    DealSnapshot,
    Drawn,
    DueReservations,
    RebuiltState,
    ReleaseOutcome,
    Reservation,
    ReserveOutcome,
    ReserveRequest,
    ReserveResult,
)


@dataclass
class _Deal:
    deal_id: int
    stock: int
    limit: int
    epoch: int
    price: int
    status: str = "open"
    users: dict[str, int] = field(default_factory=dict)
    res: dict[UUID, Reservation] = field(default_factory=dict)
    idem: dict[tuple[str, str], UUID] = field(default_factory=dict)
    since: dict[UUID, int] = field(default_factory=dict)
    draw_at: int = 0  # the opening window's end (store clock ms); 0: none pending
    entries: dict[str, tuple[UUID, int, str]] = field(default_factory=dict)
    tickets: dict[str, int] = field(default_factory=dict)
    drawn: dict[str, tuple[UUID, ReserveResult]] = field(default_factory=dict)


def _wall_clock_ms() -> int:
    return int(time.time() * 1000)


class FakeStockStore:
    def __init__(self, clock_ms: Callable[[], int] = _wall_clock_ms) -> None:
        """`clock_ms` stands for Redis's `TIME`: the store's one clock (reserve, due)."""
        self.deals: dict[int, _Deal] = {}
        self.clock_ms = clock_ms

    async def reserve(self, product_id: int, order_id: UUID, user_id: str, quantity: int,
                      idempotency_key: str | None) -> ReserveResult:
        deal = self._open_deal(product_id)
        if deal is None:
            return ReserveResult(ReserveOutcome.NOT_ACTIVE)
        if not deal.draw_at:
            return self._reserve_one(deal, order_id, user_id, quantity, idempotency_key or "")
        wait_ms = deal.draw_at - self.clock_ms()
        entry = deal.entries.get(user_id)
        if entry is None:  # as reserve.lua: one entry per buyer, a ticket drawn at random
            deal.entries[user_id] = (order_id, quantity, idempotency_key or "")
            deal.tickets[user_id] = random.getrandbits(52)
            return ReserveResult(ReserveOutcome.ENTERED, wait_ms=wait_ms, first_order_id=order_id)
        if idempotency_key and idempotency_key == entry[2]:
            return ReserveResult(ReserveOutcome.ENTERED, wait_ms=wait_ms, first_order_id=entry[0])
        return ReserveResult(ReserveOutcome.ALREADY_ENTERED, wait_ms=wait_ms)

    def _open_deal(self, product_id: int) -> _Deal | None:
        """The deal if open, its opening draw run first when due (reserve_core.lua)."""
        deal = self.deals.get(product_id)
        if deal is None or deal.status != "open":
            return None
        if deal.draw_at and self.clock_ms() >= deal.draw_at:
            for user in sorted(deal.tickets, key=lambda u: (deal.tickets[u], u)):
                order_id, quantity, key = deal.entries[user]
                deal.drawn[user] = (order_id, self._reserve_one(deal, order_id, user, quantity,
                                                                key))
            deal.entries.clear()
            deal.tickets.clear()
            deal.draw_at = 0
        return deal

    def _reserve_one(self, deal: _Deal, order_id: UUID, user_id: str, quantity: int,
                     key: str) -> ReserveResult:
        if key and (user_id, key) in deal.idem:
            return ReserveResult(ReserveOutcome.DUPLICATE, first_order_id=deal.idem[(user_id, key)])
        if deal.stock < quantity:
            return ReserveResult(ReserveOutcome.SOLD_OUT, remaining=deal.stock)
        held = deal.users.get(user_id, 0)
        if held + quantity > deal.limit:
            return ReserveResult(ReserveOutcome.LIMIT_EXCEEDED, held=held, limit=deal.limit)
        now_ms = self.clock_ms()
        deal.stock -= quantity
        deal.users[user_id] = held + quantity
        deal.res[order_id] = Reservation(order_id, user_id, quantity, now_ms, key)
        deal.since[order_id] = now_ms
        if key:
            deal.idem[(user_id, key)] = order_id
        return ReserveResult(ReserveOutcome.RESERVED, epoch=deal.epoch, remaining=deal.stock,
                             deal_id=deal.deal_id, unit_price=deal.price)

    async def drawn(self, product_id: int, buyers: Sequence[str]) -> Drawn:
        deal = self._open_deal(product_id)
        if deal is not None and deal.draw_at:
            return Drawn(deal.draw_at - self.clock_ms(), {})
        kept = self.deals.get(product_id)
        return Drawn(0, {b: None if kept is None else kept.drawn.get(b) for b in buyers})

    async def reserve_many(self, product_id: int, requests: list[ReserveRequest],
                           ) -> list[ReserveResult]:
        return [await self.reserve(product_id, r.order_id, r.user_id, r.quantity,
                                   r.idempotency_key) for r in requests]

    async def reserve_groups(self, groups: Sequence[tuple[int, list[ReserveRequest]]],
                             ) -> list[list[ReserveResult] | BaseException]:
        return [await self.reserve_many(product_id, requests)
                for product_id, requests in groups]

    async def key_used(self, product_id: int, user_id: str, key: str) -> bool:
        deal = self.deals.get(product_id)
        return deal is not None and (user_id, key) in deal.idem

    async def release(self, product_id: int, order_id: UUID) -> ReleaseOutcome:
        deal = self.deals.get(product_id)
        if deal is None or deal.status != "open":
            return ReleaseOutcome.NOT_OPEN
        reservation = deal.res.pop(order_id, None)
        if reservation is None:
            return ReleaseOutcome.NO_RESERVATION
        deal.since.pop(order_id, None)
        key = (reservation.user_id, reservation.idempotency_key)
        if reservation.idempotency_key and deal.idem.get(key) == order_id:
            del deal.idem[key]
        deal.stock += reservation.quantity
        left = deal.users.get(reservation.user_id, 0) - reservation.quantity
        if left > 0:
            deal.users[reservation.user_id] = left
        else:
            deal.users.pop(reservation.user_id, None)
        return ReleaseOutcome.RELEASED

    async def forget(self, product_id: int, order_id: UUID) -> bool:
        deal = self.deals.get(product_id)
        if deal is None:
            return False
        deal.since.pop(order_id, None)
        return deal.res.pop(order_id, None) is not None

    async def release_many(self, items: Sequence[tuple[int, UUID]]) -> list[ReleaseOutcome]:
        return [await self.release(product_id, order_id) for product_id, order_id in items]

    async def forget_many(self, items: Sequence[tuple[int, UUID]]) -> list[bool]:
        return [await self.forget(product_id, order_id) for product_id, order_id in items]

    async def open(self, product_id: int, deal_id: int, stock: int, per_user_limit: int,
                   epoch: int, unit_price: int, opening_window_ms: int = 0) -> bool:
        if product_id in self.deals:
            return False
        self.deals[product_id] = _Deal(deal_id, stock, per_user_limit, epoch, unit_price,
                                       draw_at=self.clock_ms() + opening_window_ms
                                       if opening_window_ms > 0 else 0)
        return True

    async def close(self, product_id: int, deal_id: int) -> bool:
        deal = self.deals.get(product_id)
        if deal is None or deal.deal_id != deal_id:
            return False
        deal.status = "closed"
        return True

    async def snapshot(self, product_id: int) -> DealSnapshot:
        deal = self.deals.get(product_id)
        if deal is None:
            return DealSnapshot(None, 0, 0, 0)
        return DealSnapshot(deal.status, deal.epoch, deal.deal_id, deal.stock,
                            list(deal.res.values()))

    async def peek(self, product_id: int) -> DealSnapshot:
        deal = self.deals.get(product_id)
        if deal is None:
            return DealSnapshot(None, 0, 0, 0)
        return DealSnapshot(deal.status, deal.epoch, deal.deal_id, deal.stock)

    async def due(self, product_id: int, grace_ms: int, limit: int) -> DueReservations:
        now_ms = self.clock_ms()
        deal = self.deals.get(product_id)
        if deal is None:
            return DueReservations(None, 0, [], now_ms)
        cutoff_ms = now_ms - grace_ms
        due = sorted((ms, str(oid)) for oid, ms in deal.since.items() if ms <= cutoff_ms)
        return DueReservations(deal.status, deal.deal_id,
                               [deal.res[UUID(oid)] for _, oid in due[:limit]], now_ms)

    async def reschedule(self, product_id: int, since_ms: dict[UUID, int]) -> int:
        deal = self.deals.get(product_id)
        if deal is None:
            return 0
        moved = [oid for oid in since_ms if oid in deal.since and deal.since[oid] != since_ms[oid]]
        for oid in moved:
            deal.since[oid] = since_ms[oid]
        return len(moved)

    async def drop(self, product_id: int, deal_id: int) -> bool:
        deal = self.deals.get(product_id)
        if deal is None or deal.deal_id != deal_id:
            return False
        del self.deals[product_id]
        return True

    async def rebuild(self, product_id: int, state: RebuiltState) -> bool:
        current = self.deals.get(product_id)
        if current is not None and current.epoch >= state.epoch:  # as rebuild.lua
            return False
        deal = _Deal(state.deal_id, state.stock, state.per_user_limit, state.epoch,
                     state.unit_price)
        deal.users = dict(state.users)
        deal.res = {r.order_id: r for r in state.reservations}
        deal.idem = dict(state.idempotency)
        deal.since = {r.order_id: r.reserved_at_ms for r in state.reservations}
        self.deals[product_id] = deal
        return True
