"""Starting and ending hot deals (the CLI and the admin endpoints both call these)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select, text
from sqlalchemy.exc import IntegrityError

from hotdeal_core.db.tables import hot_deals, products
from hotdeal_core.domain import MAX_OPENING_WINDOW_SECONDS, DealStatus, StockBackend
from hotdeal_core.errors import Conflict, NotFound, Unprocessable
from hotdeal_core.messaging.outbox import add_event
from hotdeal_core.settings import Settings
from hotdeal_core.usecases.context import Context
from hotdeal_core.usecases.products import live_deal_row
from schemas.events import HotDealEnded, HotDealStarted

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class StartDeal:
    product_id: int
    stock: int
    per_user_limit: int
    duration_seconds: float | None = None
    # Orders in the first seconds enter a random draw held when they end (0: none).
    opening_window_seconds: float = 0.0


@dataclass(frozen=True, slots=True)
class StartedDeal:
    deal_id: int
    product_id: int
    stock: int
    per_user_limit: int
    stock_backend: str
    ends_at: datetime | None
    opening_window_seconds: float = 0.0


def opening_window(settings: Settings, asked: float | None) -> float:
    """The window of a deal started through an edge: as asked, else the setting's default
    (DEAL_OPENING_WINDOW_SECONDS) for a deal whose stock is in Redis, none in Postgres."""
    if asked is not None:
        return asked
    return settings.deal_opening_window_seconds if settings.hotdeal_stock_redis else 0.0


async def start_deal(ctx: Context, cmd: StartDeal) -> StartedDeal:
    """Move `stock` units from the product's Postgres stock into a new ACTIVE deal.

    Refuses a product with a live deal, and never overwrites live stock in Redis. The deal
    row commits first, then its Redis state opens; a crash in between leaves an ACTIVE deal
    without Redis state, which orders see as not active until the rebuild.
    """
    if cmd.stock < 1 or cmd.per_user_limit < 1:
        raise Unprocessable("validation_error", "stock and per_user_limit must be >= 1")
    if cmd.duration_seconds is not None and cmd.duration_seconds <= 0:
        raise Unprocessable("validation_error", "duration must be positive")
    backend = StockBackend.REDIS if ctx.settings.hotdeal_stock_redis else StockBackend.DB
    if not 0 <= cmd.opening_window_seconds <= MAX_OPENING_WINDOW_SECONDS:
        raise Unprocessable("validation_error", "the opening window must be 0-"
                            f"{MAX_OPENING_WINDOW_SECONDS} seconds")
    if cmd.opening_window_seconds and backend is StockBackend.DB:
        raise Unprocessable("validation_error", "an opening window needs the stock in Redis "
                            "(HOTDEAL_STOCK_REDIS=true)")
    if backend is StockBackend.REDIS:
        await _clear_stale_redis_state(ctx, cmd.product_id)
    try:
        async with ctx.engine.begin() as conn:
            product = (await conn.execute(select(products).where(
                products.c.id == cmd.product_id).with_for_update())).first()
            if product is None:
                raise NotFound("product_not_found", f"product {cmd.product_id} does not exist")
            if await live_deal_row(conn, cmd.product_id) is not None:
                raise Conflict("deal_already_active", "this product already has a live deal")
            if product.stock < cmd.stock:
                raise Conflict("insufficient_stock",
                               f"product has {product.stock} units; {cmd.stock} requested")
            await conn.execute(text("UPDATE products SET stock = stock - :n, updated_at = now() "
                                    "WHERE id = :pid"), {"n": cmd.stock, "pid": cmd.product_id})
            # The end by Postgres's clock, the one `end_due_deals` compares with.
            ends = (func.now() + timedelta(seconds=cmd.duration_seconds)
                    if cmd.duration_seconds else None)
            deal_id, ends_at = (await conn.execute(hot_deals.insert().values(
                product_id=cmd.product_id, initial_stock=cmd.stock,
                per_user_limit=cmd.per_user_limit, status=DealStatus.ACTIVE,
                stock_backend=backend,
                remaining_stock=cmd.stock if backend is StockBackend.DB else 0,
                ends_at=ends, started_at=text("now()")).returning(
                    hot_deals.c.id, hot_deals.c.ends_at))).one()
            await add_event(conn, ctx.topics, HotDealStarted(
                hot_deal_id=deal_id, product_id=cmd.product_id, stock=cmd.stock,
                per_user_limit=cmd.per_user_limit, stock_backend=backend.value, ends_at=ends_at))
            price = int(product.price)
    except IntegrityError as exc:  # a concurrent start won the unique live-deal index
        raise Conflict("deal_already_active", "this product already has a live deal") from exc
    ctx.outbox_written()
    if backend is StockBackend.REDIS:
        opened = await ctx.stock.open(
            cmd.product_id, int(deal_id), cmd.stock, cmd.per_user_limit, epoch=1,
            unit_price=price, opening_window_ms=round(cmd.opening_window_seconds * 1000))
        if not opened:  # cannot happen after the stale check unless raced; never overwrite
            log.error("deal %s: Redis already held live state; left for recovery", deal_id)
    return StartedDeal(int(deal_id), cmd.product_id, cmd.stock, cmd.per_user_limit,
                       backend.value, ends_at, cmd.opening_window_seconds)


async def _clear_stale_redis_state(ctx: Context, product_id: int) -> None:
    """Redis state of a deal that is no longer live in Postgres (a crash after the flush
    left its keys) is dropped; the state of a live deal is never touched."""
    snap = await ctx.stock.peek(product_id)
    if snap.status is None:
        return
    async with ctx.engine.connect() as conn:
        status = (await conn.execute(select(hot_deals.c.status).where(
            hot_deals.c.id == snap.deal_id))).scalar_one_or_none()
    if status in (DealStatus.SCHEDULED, DealStatus.ACTIVE, DealStatus.ENDED):
        raise Conflict("deal_already_active", "Redis holds live stock of this product's deal")
    await ctx.stock.drop(product_id, snap.deal_id)


async def end_deal(ctx: Context, product_id: int,
                   reason: str = "stopped") -> tuple[int, bool]:
    """Stop intake at once (close the Redis state, mark ENDED), publish HotDealEnded.

    Returns (deal id, whether this call ended it). Ending an ENDED deal again republishes
    nothing; the reconciler's flush does the rest.
    """
    async with ctx.engine.connect() as conn:
        deal = await live_deal_row(conn, product_id)
    if deal is None:
        raise NotFound("deal_not_found", f"product {product_id} has no live deal")
    deal_id = int(deal.id)
    if deal.stock_backend == StockBackend.REDIS:
        await ctx.stock.close(product_id, deal_id)
    async with ctx.engine.begin() as conn:
        ended = (await conn.execute(text(
            "UPDATE hot_deals SET status = 'ENDED', ended_at = now(), updated_at = now() "
            "WHERE id = :d AND status = 'ACTIVE' RETURNING id"), {"d": deal_id})).first()
        if ended is not None:
            await add_event(conn, ctx.topics, HotDealEnded(
                hot_deal_id=deal_id, product_id=product_id,
                reason="duration_over" if reason == "duration_over" else "stopped"))
    if ended is not None:
        ctx.outbox_written()
    return deal_id, ended is not None


async def end_due_deals(ctx: Context) -> list[int]:
    """End ACTIVE deals whose duration is over (their HotDealEnded triggers the flush)."""
    async with ctx.engine.connect() as conn:
        due = (await conn.execute(select(hot_deals.c.product_id).where(
            hot_deals.c.status == DealStatus.ACTIVE,
            hot_deals.c.ends_at < func.now()))).scalars().all()
    ended = []
    for product_id in due:
        deal_id, now = await end_deal(ctx, int(product_id), reason="duration_over")
        if now:
            ended.append(deal_id)
    return ended
