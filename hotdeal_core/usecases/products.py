"""Products and the live view of their deal."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from hotdeal_core.domain import StockBackend
from hotdeal_core.errors import NotFound, Unprocessable
from hotdeal_core.usecases.context import Context


@dataclass(frozen=True, slots=True)
class DealView:
    id: int
    status: str
    stock_backend: str
    initial_stock: int
    per_user_limit: int
    remaining: int | None  # live stock: Redis or the db hot row; None if unknown
    epoch: int
    ends_at: datetime | None


@dataclass(frozen=True, slots=True)
class ProductView:
    id: int
    name: str
    price: int
    stock: int
    deal: DealView | None


async def create_product(ctx: Context, name: str, price: int, stock: int) -> ProductView:
    if not name.strip() or price < 0 or stock < 0:
        raise Unprocessable("validation_error", "name must be non-empty; price, stock >= 0")
    pid = await ctx.orders_db.create_product(name, price, stock)
    return ProductView(pid, name, price, stock, None)


async def get_product(ctx: Context, product_id: int) -> ProductView:
    found = await ctx.orders_db.product(product_id)
    if found is None:
        raise NotFound("product_not_found", f"product {product_id} does not exist")
    product, d = found
    deal_view = None
    if d is not None:
        remaining: int | None = d.remaining_stock
        if d.stock_backend == StockBackend.REDIS:  # the live stock is Redis's
            snap = await ctx.stock.peek(product_id)
            remaining = snap.stock if snap.deal_id == d.id else None
        deal_view = DealView(d.id, d.status, d.stock_backend, d.initial_stock,
                             d.per_user_limit, remaining, d.epoch, d.ends_at)
    return ProductView(product.id, product.name, product.price, product.stock, deal_view)
