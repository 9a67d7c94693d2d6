"""Placing an order: reserve the stock (Redis, or Postgres for ordinary products and deals
kept in the db), persist the PENDING order with its OrderPlaced event, answer at once."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from uuid import UUID, uuid4

from hotdeal_core.batching import OutcomeUnknown
from hotdeal_core.domain import OrderStatus
from hotdeal_core.errors import Conflict, DependencyUnavailable, NotFound
from hotdeal_core.observability import tracing
from hotdeal_core.ports.orders import Fenced, NewOrder, NotWritten, ReservedOrder, Taken
from hotdeal_core.stock.draws import DrawWaiters
from hotdeal_core.stock.port import ReserveOutcome, ReserveRequest, ReserveResult
from hotdeal_core.stock.reserver import ReserveItem
from hotdeal_core.usecases.context import Context
from hotdeal_core.usecases.views import OrderView
from schemas.events import OrderCancellationRequested, OrderConfirmationRequested

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class PlaceOrder:
    product_id: int
    user_id: str
    quantity: int
    idempotency_key: str | None = None


def _sold_out() -> Conflict:
    return Conflict("sold_out", "the product is sold out")


def _not_active() -> Conflict:
    return Conflict("deal_not_active", "the hot deal is not active")


async def place_order(ctx: Context, cmd: PlaceOrder) -> OrderView:
    order_id = uuid4()
    if await refused_by_memo(ctx, cmd.product_id, cmd.user_id, cmd.idempotency_key):
        raise _sold_out()
    if ctx.settings.hotdeal_stock_redis:
        result = await _reserve(ctx, cmd, order_id)
        if result.outcome is ReserveOutcome.ENTERED:
            result = await _drawn(ctx, cmd, order_id, result)
        if result.outcome is ReserveOutcome.ALREADY_ENTERED:
            raise Conflict("already_entered", "this buyer already entered the deal's opening "
                           "draw with another request; its answer comes at the draw, in "
                           f"{max(result.wait_ms, 0) / 1000:.1f} s")
        if result.outcome is ReserveOutcome.RESERVED:
            ctx.after_reserve()  # a crash injected here leaves an orphan reservation
            return await _persist_reserved(ctx, cmd, order_id, result)
        if result.outcome is ReserveOutcome.DUPLICATE:
            assert result.first_order_id is not None
            return await _first_answer(ctx, result.first_order_id)
        if result.outcome is ReserveOutcome.SOLD_OUT:
            if result.remaining == 0:
                ctx.sold_out.remember(cmd.product_id)
            raise _sold_out()
        if result.outcome is ReserveOutcome.LIMIT_EXCEEDED:
            raise Conflict("limit_exceeded",
                           f"per-user limit is {result.limit}; {result.held} already held")
        # NOT_ACTIVE: no open deal in Redis; Postgres decides (ordinary product, db deal...)
    return await _place_in_postgres(ctx, cmd, order_id)


async def _drawn(ctx: Context, cmd: PlaceOrder, order_id: UUID,
                 entered: ReserveResult) -> ReserveResult:
    """Wait for the opening draw and take this buyer's outcome as the reservation's. A retry
    of the entry (same key) gets the entry's order as a duplicate; no entry left (the state
    was rebuilt): reserve again, first come first served."""
    draws = ctx.draws if ctx.draws is not None else DrawWaiters(ctx.stock)
    answer = await draws.answer(cmd.product_id, cmd.user_id, entered.wait_ms)
    if answer is None:
        return await _reserve(ctx, cmd, order_id)
    entry_order_id, result = answer
    if entry_order_id != order_id and result.outcome is ReserveOutcome.RESERVED:
        return ReserveResult(ReserveOutcome.DUPLICATE, first_order_id=entry_order_id)
    return result


async def refused_by_memo(ctx: Context, product_id: int, user_id: str,
                          idempotency_key: str | None) -> bool:
    """Sold out a moment ago (this process's memo), and no first answer to find: a retry
    with an idempotency key that reserved must get its order back (the last unit may be
    its own), so a keyed request is refused only if its key holds no reservation."""
    if not ctx.sold_out.sold_out(product_id):
        return False
    return idempotency_key is None or not await ctx.stock.key_used(
        product_id, user_id, idempotency_key)


async def _reserve(ctx: Context, cmd: PlaceOrder, order_id: UUID) -> ReserveResult:
    """One atomic reservation, in this process's batch of reservations when it has one."""
    with tracing.span("reserve"):
        if ctx.reserver is None:
            return await ctx.stock.reserve(cmd.product_id, order_id, cmd.user_id,
                                           cmd.quantity, cmd.idempotency_key)
        result: ReserveResult = await ctx.reserver.submit(ReserveItem(
            cmd.product_id, ReserveRequest(order_id, cmd.user_id, cmd.quantity,
                                           cmd.idempotency_key)))
        return result


async def _first_answer(ctx: Context, order_id: UUID) -> OrderView:
    order = await ctx.orders_db.order(order_id)
    if order is None:  # the first request is still writing its order
        raise Conflict("idempotency_in_progress",
                       "a request with this idempotency key is still in progress; retry")
    return order


async def _persist_reserved(ctx: Context, cmd: PlaceOrder, order_id: UUID,
                            reserved: ReserveResult) -> OrderView:
    """Hand the reserved order to this process's group commit and await its outcome; every
    order known not to be written has its reservation released before the answer."""
    item = ReservedOrder(order_id, cmd.product_id, reserved.deal_id, reserved.epoch,
                         cmd.user_id, cmd.quantity, reserved.unit_price, cmd.idempotency_key,
                         ctx.settings.reservation_ttl_seconds, ctx.topics.orders,
                         tracing.headers())
    try:
        with tracing.span("order write"):  # its group commit's span links to this one
            if ctx.order_writer is not None:
                order: OrderView = await ctx.order_writer.submit(item)
            else:
                outcome = (await ctx.orders_db.write_reserved_orders([item], None))[0]
                if isinstance(outcome, BaseException):
                    raise outcome
                order = outcome
                ctx.outbox_written()
    except asyncio.CancelledError:
        raise  # the caller left; the write may still commit (the order then simply waits)
    except OutcomeUnknown:
        raise  # the orphan sweeper decides from Postgres; releasing now could oversell
    except Exception as exc:
        await _release_quietly(ctx, cmd.product_id, order_id)
        if isinstance(exc, Fenced):
            raise _not_active() from None
        if isinstance(exc, NotWritten):
            if cmd.idempotency_key:  # a concurrent request with the same key won
                return await _existing_by_key(ctx, cmd.user_id, cmd.idempotency_key)
            # The orphan sweeper voided this order id: its units are already back.
            raise DependencyUnavailable("postgres", "reservation expired; retry") from None
        raise
    return order


async def _release_quietly(ctx: Context, product_id: int, order_id: UUID) -> None:
    try:
        await ctx.stock.release(product_id, order_id)
    except Exception:  # noqa: BLE001 - the orphan sweeper will release it
        log.warning("could not release reservation of order %s; left to the sweeper", order_id)


async def _existing_by_key(ctx: Context, user_id: str, key: str) -> OrderView:
    order = await ctx.orders_db.order_by_key(user_id, key)
    if order is None:
        raise Conflict("idempotency_in_progress", "retry")
    return order


async def _place_in_postgres(ctx: Context, cmd: PlaceOrder, order_id: UUID) -> OrderView:
    """The stock taken in the order's own Postgres transaction."""
    answer = await ctx.orders_db.take_stock_and_place(NewOrder(
        order_id, cmd.product_id, cmd.user_id, cmd.quantity, cmd.idempotency_key,
        ctx.settings.reservation_ttl_seconds))
    if answer.outcome is Taken.PLACED or answer.outcome is Taken.REPLAYED:
        assert answer.order is not None
        if answer.outcome is Taken.PLACED:
            ctx.outbox_written()
        return answer.order
    if answer.outcome is Taken.KEY_TAKEN and cmd.idempotency_key:
        return await _existing_by_key(ctx, cmd.user_id, cmd.idempotency_key)
    if answer.outcome is Taken.NO_PRODUCT:
        raise NotFound("product_not_found", f"product {cmd.product_id} does not exist")
    if answer.outcome is Taken.NOT_ACTIVE:
        raise _not_active()
    if answer.outcome is Taken.LIMIT_EXCEEDED:
        raise Conflict("limit_exceeded",
                       f"per-user limit is {answer.limit}; {answer.held} already held")
    raise _sold_out()


async def get_order(ctx: Context, order_id: UUID, buyer: str) -> OrderView:
    """The buyer's order; anyone else's is as unknown as one that does not exist."""
    order = await ctx.orders_db.order(order_id)
    if order is None or order.user_id != buyer:
        raise NotFound("order_not_found", f"order {order_id} does not exist")
    return order


async def request_confirmation(ctx: Context, order_id: UUID) -> OrderView:
    """Trusted callers confirm without a payment; the stock worker applies it."""
    return await _request(ctx, order_id, None, OrderStatus.CANCELLED, "the order is cancelled",
                          OrderConfirmationRequested(order_id=order_id))


async def request_cancellation(ctx: Context, order_id: UUID, user_id: str) -> OrderView:
    """The buyer cancels a PENDING order; the stock worker applies it and frees the stock."""
    return await _request(ctx, order_id, user_id, OrderStatus.CONFIRMED,
                          "the order is already confirmed",
                          OrderCancellationRequested(order_id=order_id))


async def _request(ctx: Context, order_id: UUID, owner: str | None, refused: OrderStatus,
                   why: str, event: OrderConfirmationRequested | OrderCancellationRequested,
                   ) -> OrderView:
    """Record a request for the stock worker if the order is PENDING (idempotent otherwise:
    the order already is where the request leads; `refused` is where it cannot go from)."""
    order = await ctx.orders_db.order(order_id)
    if order is None or (owner is not None and order.user_id != owner):
        raise NotFound("order_not_found", f"order {order_id} does not exist")
    if order.status == refused:
        raise Conflict("invalid_state", why)
    if order.paid and isinstance(event, OrderCancellationRequested):
        # A paid order is only confirmed (domain.can_transition): say so now rather than
        # let the stock worker ignore the request.
        raise Conflict("invalid_state", "the order is paid")
    if order.status == OrderStatus.PENDING:
        # The stock worker judges the request against the order as it is then.
        await ctx.orders_db.add_event(event)
        ctx.outbox_written()
    return order
