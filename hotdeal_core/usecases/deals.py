"""Starting and ending hot deals (the CLI, the admin endpoints and the reconciler call these)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from hotdeal_core.domain import MAX_OPENING_WINDOW_SECONDS, DealStatus, StockBackend
from hotdeal_core.errors import Conflict, NotFound, Unprocessable
from hotdeal_core.ports.deals import Deal, EndReason, NewDeal
from hotdeal_core.settings import Settings
from hotdeal_core.usecases.books import each_apart
from hotdeal_core.usecases.context import Context

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
    """Move `stock` units from the product into a new ACTIVE deal, then open its Redis
    state (never over a live one); a crash in between leaves an ACTIVE deal without Redis
    state, which orders see as not active until the rebuild."""
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
    opened = await ctx.deals_db.open_deal(NewDeal(
        cmd.product_id, cmd.stock, cmd.per_user_limit, backend, cmd.duration_seconds))
    ctx.outbox_written()
    if backend is StockBackend.REDIS:
        in_redis = await ctx.stock.open(
            cmd.product_id, opened.deal_id, cmd.stock, cmd.per_user_limit, epoch=1,
            unit_price=opened.unit_price,
            opening_window_ms=round(cmd.opening_window_seconds * 1000))
        if not in_redis:  # cannot happen after the stale check unless raced; never overwrite
            log.error("deal %s: Redis already held live state; left for recovery",
                      opened.deal_id)
    return StartedDeal(opened.deal_id, cmd.product_id, cmd.stock, cmd.per_user_limit,
                       backend.value, opened.ends_at, cmd.opening_window_seconds)


async def _clear_stale_redis_state(ctx: Context, product_id: int) -> None:
    """Redis state of a deal that is no longer live in Postgres (a crash after the flush
    left its keys) is dropped; the state of a live deal is never touched."""
    snap = await ctx.stock.peek(product_id)
    if snap.status is None:
        return
    status = await ctx.deals_db.deal_status(snap.deal_id)
    if status in (DealStatus.SCHEDULED, DealStatus.ACTIVE, DealStatus.ENDED):
        raise Conflict("deal_already_active", "Redis holds live stock of this product's deal")
    await ctx.stock.drop(product_id, snap.deal_id)


async def end_deal(ctx: Context, product_id: int,
                   reason: EndReason = "stopped") -> tuple[int, bool]:
    """Stop intake of the product's live deal, mark it ENDED, publish HotDealEnded: (deal
    id, whether this call ended it). Again on an ENDED deal: nothing more is published."""
    deal = await ctx.deals_db.live_deal(product_id)
    if deal is None:
        raise NotFound("deal_not_found", f"product {product_id} has no live deal")
    return deal.id, await stop_deal(ctx, deal, reason)


async def stop_deal(ctx: Context, deal: Deal, reason: EndReason) -> bool:
    """Close its Redis state, then ACTIVE -> ENDED by compare-and-set: whether this call
    ended it (another replica's call, or a flush, may have)."""
    if deal.stock_backend is StockBackend.REDIS:
        await ctx.stock.close(deal.product_id, deal.id)
    ended = await ctx.deals_db.mark_ended(deal, reason)
    if ended:
        ctx.outbox_written()
    return ended


async def end_due_deals(ctx: Context) -> list[int]:
    """End ACTIVE deals whose duration is over (their HotDealEnded triggers the flush):
    the ids this call ended. By deal id, so a deal ended and replaced meanwhile is never
    confused with its product's next one; one that fails is retried next round."""
    async def end(deal: Deal) -> int | None:
        return deal.id if await stop_deal(ctx, deal, "duration_over") else None
    ended = await each_apart(await ctx.deals_db.due_deals(), end, "ending a due deal")
    return [deal_id for deal_id in ended if deal_id is not None]
