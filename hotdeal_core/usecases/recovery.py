"""Recovery: rebuild an ACTIVE deal's lost Redis state from Postgres under a new epoch
(the rules: docs/architecture.md, "Deals, recovery and the flush")."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from uuid import UUID

from hotdeal_core.domain import DealStatus, OrderStatus, StockBackend
from hotdeal_core.errors import Conflict
from hotdeal_core.ports.deals import Deal, LiveOrder
from hotdeal_core.stock.port import DealSnapshot, RebuiltState, Reservation
from hotdeal_core.usecases.books import each_apart
from hotdeal_core.usecases.context import Context

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class RecoverReport:
    deal_id: int
    product_id: int
    epoch: int
    stock: int
    reservations: int
    reason: str = "asked for"  # or why recover_lost_states rebuilt it (`lost_writes`)


async def recover_deal(ctx: Context, product_id: int) -> RecoverReport:
    """Rebuild an ACTIVE deal's Redis state from its PENDING and CONFIRMED orders under a
    new epoch, which fences every reservation made on the old state (deal_not_active)."""
    report = await _rebuild(ctx, product_id, only_if_lost=False)
    assert report is not None
    return report


async def _rebuild(ctx: Context, product_id: int, *, only_if_lost: bool) -> RecoverReport | None:
    """`only_if_lost`: look again under the exclusive deal fence and rebuild only if the
    state lost writes; None if it has not (a healthy deal is never rebuilt on a race)."""
    allotted = await _allot_epoch(ctx, product_id, only_if_lost=only_if_lost)
    if allotted is None:
        return None
    deal_id, epoch, reason = allotted
    # If this fails, Postgres is ahead of Redis: `lost_writes` flags it, the next round heals.
    async with ctx.deals_db.locked(deal_id) as books:
        deal = books.deal
        if deal.status is not DealStatus.ACTIVE:
            raise Conflict("deal_not_active", f"deal {deal_id} ended during its rebuild")
        if deal.epoch != epoch:
            raise Conflict("invalid_state", f"deal {deal_id} was rebuilt meanwhile "
                                            f"(epoch {deal.epoch})")
        state = state_from_orders(deal, epoch, await books.unit_price(),
                                  await books.live_orders())
        if not await ctx.stock.rebuild(product_id, state):
            raise Conflict("invalid_state", "a newer rebuild of this deal is already in Redis")
    log.warning("deal %s: Redis state rebuilt from Postgres (epoch %d, stock %d): %s",
                deal_id, epoch, state.stock, reason)
    return RecoverReport(deal_id, product_id, epoch, state.stock, len(state.reservations),
                         reason)


async def _allot_epoch(ctx: Context, product_id: int, *,
                       only_if_lost: bool) -> tuple[int, int, str] | None:
    """Commit the rebuild's epoch first, on its own: (deal id, epoch, reason), or None if
    `only_if_lost` and nothing was lost. Above both the deal's and Redis's epoch, so no
    state ever carries an epoch Postgres has not committed, and no two rebuilds share one."""
    live = await ctx.deals_db.live_deal(product_id)
    if live is None or live.status is not DealStatus.ACTIVE:
        raise Conflict("deal_not_active", f"product {product_id} has no active deal")
    async with ctx.deals_db.locked(live.id) as books:
        deal = books.deal
        if deal.status is not DealStatus.ACTIVE:
            raise Conflict("deal_not_active", f"product {product_id} has no active deal")
        if deal.stock_backend is not StockBackend.REDIS:
            raise Conflict("invalid_state", "this deal keeps its stock in Postgres")
        snap = await ctx.stock.peek(product_id)
        reason = "asked for"
        if only_if_lost:
            units = await books.units_by_status()
            lost = lost_writes(deal, snap,
                               units[OrderStatus.PENDING] + units[OrderStatus.CONFIRMED])
            if lost is None:
                return None
            reason = lost
        epoch = max(deal.epoch, snap.epoch) + 1
        await books.set_epoch(epoch)
    return deal.id, epoch, reason


def lost_writes(deal: Deal, snap: DealSnapshot, sold: int | None) -> str | None:
    """Why an ACTIVE deal's Redis state must be rebuilt, or None if it holds every write.
    `sold`: units of its PENDING and CONFIRMED orders (None: not read; status and epoch only).
    A healthy state never offers more than `initial - sold` (docs/architecture.md)."""
    if snap.status is None or snap.deal_id != deal.id:
        return "no Redis state for this deal"
    if snap.epoch < deal.epoch:
        return f"Redis state of epoch {snap.epoch}, the deal is at {deal.epoch}"
    if snap.epoch > deal.epoch:  # every order is fenced until a rebuild passes both
        return (f"Redis state of epoch {snap.epoch} is ahead of the deal's {deal.epoch} "
                f"(a rebuild whose epoch was never committed)")
    if sold is not None and snap.status == "open" and snap.stock > deal.initial_stock - sold:
        return (f"Redis offers {snap.stock} units, Postgres leaves "
                f"{deal.initial_stock - sold}: reservations lost")
    return None


def state_from_orders(deal: Deal, epoch: int, unit_price: int,
                      orders: list[LiveOrder]) -> RebuiltState:
    """stock = initial - units sold; per-user counts and idempotency keys from the same
    orders; one reservation per PENDING order."""
    users: dict[str, int] = {}
    reservations: list[Reservation] = []
    idem: dict[tuple[str, str], UUID] = {}
    for o in orders:
        users[o.user_id] = users.get(o.user_id, 0) + o.quantity
        if o.idempotency_key:
            idem[(o.user_id, o.idempotency_key)] = o.id
        if o.status is OrderStatus.PENDING:
            ms = int(o.created_at.timestamp() * 1000)
            reservations.append(Reservation(o.id, o.user_id, o.quantity, ms,
                                            o.idempotency_key or ""))
    stock = deal.initial_stock - sum(users.values())
    return RebuiltState(deal.id, stock, deal.per_user_limit, epoch, unit_price, users,
                        reservations, idem)


async def recover_lost_states(ctx: Context) -> list[RecoverReport]:
    """Rebuild the ACTIVE Redis deals whose state lost writes (Redis restarted empty, a
    failover to a replica that had not received them). The check without the fence is
    cheap (one peek, one sum); a deal it flags is looked at again under the fence."""
    async def check(deal: Deal) -> RecoverReport | None:
        snap = await ctx.stock.peek(deal.product_id)  # Redis first: see `lost_writes`
        if lost_writes(deal, snap, None) is None and \
                lost_writes(deal, snap, await ctx.deals_db.sold_units(deal.id)) is None:
            return None
        try:
            return await _rebuild(ctx, deal.product_id, only_if_lost=True)
        except Conflict as exc:  # ended meanwhile, or rebuilt by someone else
            log.info("recovery of deal %s skipped: %s", deal.id, exc.message)
            return None
    reports = await each_apart(await ctx.deals_db.active_redis_deals(), check,
                               "recovering a deal")
    return [r for r in reports if r is not None]
