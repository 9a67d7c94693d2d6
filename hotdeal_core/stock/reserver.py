"""Reservations in natural batches: the buyers who arrive while a call is on its way are
reserved by the next one (one script per deal, one round trip per node). A deal's failed call
is never retried buyer by buyer (docs/architecture.md, "The batched design")."""

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
