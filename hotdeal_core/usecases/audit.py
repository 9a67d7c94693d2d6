"""The audit: is every unit of a deal accounted for? initial = on sale + pending +
confirmed + in flight (docs/architecture.md, "Deals, recovery and the flush")."""

from __future__ import annotations

import asyncio
from dataclasses import asdict, dataclass
from typing import Any

from hotdeal_core.domain import DealStatus, OrderStatus, StockBackend
from hotdeal_core.errors import NotFound
from hotdeal_core.usecases.books import held_units
from hotdeal_core.usecases.context import Context


@dataclass(frozen=True, slots=True)
class Audit:
    deal_id: int
    product_id: int
    status: str
    stock_backend: str
    initial: int
    on_sale: int
    pending: int
    confirmed: int
    in_flight: int
    cancelled: int

    @property
    def balanced(self) -> bool:
        return self.initial == self.on_sale + self.pending + self.confirmed + self.in_flight

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "balanced": self.balanced}


async def latest_deal_id(ctx: Context, product_id: int) -> int:
    deal_id = await ctx.deals_db.latest_deal_id(product_id)
    if deal_id is None:
        raise NotFound("deal_not_found", f"product {product_id} has never had a deal")
    return deal_id


async def audit_deal(ctx: Context, deal_id: int, attempts: int = 3) -> Audit:
    """Exact once the deal is quiet or reconciled; under live traffic the Redis and Postgres
    reads are not one snapshot, so a mismatch is retried a few times before it is reported."""
    audit = await _audit_once(ctx, deal_id)
    for _ in range(attempts - 1):
        if audit.balanced:
            break
        audit = await _audit_once(ctx, deal_id)
    return audit


async def _audit_once(ctx: Context, deal_id: int) -> Audit:
    deal, units = await ctx.deals_db.deal_and_units(deal_id)
    on_sale, in_flight = deal.returned_stock, 0
    if deal.status is not DealStatus.RECONCILED:
        if deal.stock_backend is StockBackend.DB:
            on_sale += deal.remaining_stock
        else:
            held = await held_units(ctx.stock, ctx.deals_db, deal)
            if held.state_found:
                on_sale += held.stock
                in_flight = held.in_flight
    return Audit(deal_id, deal.product_id, deal.status.value, deal.stock_backend.value,
                 deal.initial_stock, on_sale, units[OrderStatus.PENDING],
                 units[OrderStatus.CONFIRMED], in_flight, units[OrderStatus.CANCELLED])


LIVE_AUDITS_AT_ONCE = 8


async def audit_live_deals(ctx: Context) -> list[Audit]:
    live = await ctx.deals_db.live_deal_ids()
    # A few at a time: one after another, 178 live deals took over a second (a scrape's
    # timeout); all at once would take every pooled connection from the buyers.
    gate = asyncio.Semaphore(LIVE_AUDITS_AT_ONCE)

    async def one(deal_id: int) -> Audit:
        async with gate:
            return await audit_deal(ctx, deal_id, attempts=1)
    return list(await asyncio.gather(*(one(deal_id) for deal_id in live)))
