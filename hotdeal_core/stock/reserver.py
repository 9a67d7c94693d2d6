"""Reservations in natural batches: the buyers of one deal who arrive while a reservation
call is on its way are reserved together by the next one (one script call carrying them
all, same hash tag, per-buyer outcomes in arrival order; see `StockStore.reserve_many`).

A batch of several deals is one `reserve_groups` call: one script per deal, one round trip
(and, with replica acks, one WAIT) per Redis node. A deal's failed call is not retried
buyer by buyer: a script that failed part-way may have reserved for some of them, and a
second reservation of the same order id would take its units twice. Every buyer of that
deal gets the error (the orphan sweep releases anything the call left behind, as for a
single reservation); the buyers of the other deals of the batch get their own outcomes.
"""

from __future__ import annotations

from dataclasses import dataclass

from hotdeal_core.batching import Batcher
from hotdeal_core.stock.port import ReserveRequest, ReserveResult, StockStore


@dataclass(frozen=True, slots=True)
class ReserveItem:
    product_id: int
    request: ReserveRequest


def reservation_batcher(store: StockStore, max_batch: int) -> Batcher[ReserveItem, ReserveResult]:
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

    return Batcher("reservations", reserve, max_batch=max_batch, split_on_failure=False,
                   dependency="redis")
