"""What the flush, the audit and the deal duties share: a deal's Redis holdings classified
by what Postgres says of their orders, and a duty's per-deal work kept apart."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import TypeVar

from hotdeal_core.domain import OrderStatus
from hotdeal_core.ports.deals import Deal, OrderStatuses
from hotdeal_core.stock.port import StockStore

log = logging.getLogger(__name__)
T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True, slots=True)
class HeldUnits:
    """What a deal's Redis state holds, classified by what Postgres says of its orders."""

    state_found: bool  # the Redis state is this deal's
    stock: int  # units on sale (0 when the state is missing or another deal's)
    orphaned: int  # reserved, and no order row
    cancelled: int  # reserved for an order already CANCELLED (not released yet)

    @property
    def in_flight(self) -> int:
        return self.orphaned + self.cancelled


async def held_units(stock: StockStore, books: OrderStatuses, deal: Deal) -> HeldUnits:
    """Snapshot the deal's Redis state, read its reservations' order statuses, classify."""
    snap = await stock.snapshot(deal.product_id)
    statuses = await books.order_statuses([r.order_id for r in snap.reservations])
    found = snap.deal_id == deal.id
    return HeldUnits(
        state_found=found, stock=snap.stock if found else 0,
        orphaned=sum(r.quantity for r in snap.reservations if r.order_id not in statuses),
        cancelled=sum(r.quantity for r in snap.reservations
                      if statuses.get(r.order_id) == OrderStatus.CANCELLED))


async def each_apart(items: Iterable[T], work: Callable[[T], Awaitable[R]],
                     what: str) -> list[R]:
    """`work` on each item; one's failure (logged) never stops the others' (a duty's
    deals: one whose Redis keys are unreachable must not keep the rest from ending)."""
    done = []
    for item in items:
        try:
            done.append(await work(item))
        except Exception:  # retried at the duty's next round
            log.exception("%s of %s failed; the others go on", what, item)
    return done
