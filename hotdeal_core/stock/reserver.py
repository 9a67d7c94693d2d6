"""Reservations in natural batches: the buyers who arrive while a call is on its way are
reserved by the next one (one script per deal, one round trip per node). A deal's failed call
is never retried buyer by buyer; only one that never reached Redis (`NotSent`) is sent again."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from hotdeal_core.batching import Batcher
from hotdeal_core.stock.port import NotSent, ReserveRequest, ReserveResult, StockStore

# Between two sends of a reservation that never reached Redis: the slot map is reloaded in
# the background meanwhile (hotdeal_core/stock/client.py `_refresh_later`).
RESEND_PAUSE_S = 0.2


@dataclass(frozen=True, slots=True)
class ReserveItem:
    product_id: int
    request: ReserveRequest


@dataclass
class ReservationBatcher(Batcher[ReserveItem, ReserveResult]):
    # How long a reservation that never reached Redis is sent again before its caller gets
    # the NotSent (503); 0: at once.
    failover_wait_s: float = 0.0
    resend_pause_s: float = RESEND_PAUSE_S

    async def submit(self, item: ReserveItem) -> ReserveResult:
        deadline = time.monotonic() + self.failover_wait_s
        while True:
            try:
                return await super().submit(item)
            except NotSent:
                if time.monotonic() + self.resend_pause_s > deadline:
                    raise
            await asyncio.sleep(self.resend_pause_s)  # a pause between sends


def reservation_batcher(store: StockStore, max_batch: int, *, failover_wait_s: float = 0.0
                        ) -> ReservationBatcher:
    async def reserve(items: list[ReserveItem]) -> list[ReserveResult | BaseException]:
        by_product: dict[int, list[int]] = {}
        for i, item in enumerate(items):
            by_product.setdefault(item.product_id, []).append(i)
        groups = [(product_id, [items[i].request for i in indexes])
                  for product_id, indexes in by_product.items()]
        outcomes: list[ReserveResult | BaseException] = list(items)  # type: ignore[arg-type]
        for indexes, group in zip(by_product.values(),
                                  await store.reserve_groups(groups), strict=True):
            for n, i in enumerate(indexes):
                outcomes[i] = group if isinstance(group, BaseException) else group[n]
        return outcomes

    return ReservationBatcher("reservations", reserve, max_batch=max_batch,
                              split_on_failure=False, dependency="redis",
                              failover_wait_s=failover_wait_s)
