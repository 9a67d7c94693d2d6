"""Products and their live deal, in Postgres."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from hotdeal_core.db.deals import is_live
from hotdeal_core.db.tables import hot_deals, products
from hotdeal_core.ports.orders import LiveDeal, Product


async def insert_product(conn: AsyncConnection, name: str, price: int, stock: int) -> int:
    return int((await conn.execute(products.insert().values(
        name=name, price=price, stock=stock).returning(products.c.id))).scalar_one())


async def live_deal_row(conn: AsyncConnection, product_id: int) -> LiveDeal | None:
    row = (await conn.execute(select(*(hot_deals.c[name] for name in LiveDeal._fields)).where(
        hot_deals.c.product_id == product_id, is_live()))).first()
    return None if row is None else LiveDeal(*row)


async def product_and_deal(conn: AsyncConnection,
                           product_id: int) -> tuple[Product, LiveDeal | None] | None:
    row = (await conn.execute(select(products.c.id, products.c.name, products.c.price,
                                     products.c.stock).where(products.c.id == product_id))
           ).first()
    if row is None:
        return None
    return Product(int(row.id), row.name, int(row.price), int(row.stock)), \
        await live_deal_row(conn, product_id)
