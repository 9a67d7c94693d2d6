"""Products and the live view of their deal."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select

from hotdeal_core.db.deals import live_deal_row
from hotdeal_core.db.tables import products
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
    async with ctx.engine.begin() as conn:
        pid = (await conn.execute(products.insert().values(name=name, price=price, stock=stock)
                                  .returning(products.c.id))).scalar_one()
    return ProductView(int(pid), name, price, stock, None)


async def get_product(ctx: Context, product_id: int) -> ProductView:
    async with ctx.engine.connect() as conn:
        row = (await conn.execute(select(products).where(products.c.id == product_id))).first()
        if row is None:
            raise NotFound("product_not_found", f"product {product_id} does not exist")
        deal = await live_deal_row(conn, product_id)
    deal_view = None
    if deal is not None:
        d = deal
        remaining: int | None = d.remaining_stock
        if d.stock_backend == StockBackend.REDIS:
            snap = await ctx.stock.peek(product_id)
            remaining = snap.stock if snap.deal_id == d.id else None
        deal_view = DealView(d.id, d.status, d.stock_backend, d.initial_stock,
                             d.per_user_limit, remaining, d.epoch, d.ends_at)
    return ProductView(row.id, row.name, row.price, row.stock, deal_view)
