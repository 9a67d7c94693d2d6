"""Settling orders: confirmations and cancellations applied in one transaction per batch
(`settle_batch`), each command in the order given; units given back exactly once."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from uuid import UUID

from hotdeal_core.domain import CancelReason, OrderStatus
from hotdeal_core.ports.settlement import LockedOrder, SettlementTx
from hotdeal_core.stock.port import ReleaseOutcome
from hotdeal_core.usecases.context import Context
from hotdeal_core.usecases.settlement_plan import (
    Cancel,
    Command,
    Confirm,
    Plan,
    SettleResult,
    apply_command,
)

log = logging.getLogger(__name__)

GROUP = "stock-worker"


async def settle_batch(ctx: Context, commands: Sequence[Command], *,
                       consumer: str = GROUP) -> list[SettleResult]:
    """Apply `commands` in one transaction; one result per command, in order."""
    if not commands:
        return []
    plan = Plan()
    async with ctx.settlement_db.transaction() as tx:
        fresh = await _first_times(tx, consumer, commands)
        # Only cancellations give units back: only they share the deal fence.
        deals = await tx.fence_deals_of(sorted(
            {c.order_id for c, new in zip(commands, fresh, strict=True)
             if new and isinstance(c, Cancel)}))
        found = await tx.lock_orders(sorted({c.order_id for c in commands}))
        for command, new in zip(commands, fresh, strict=True):
            order = found.get(command.order_id)
            if new:
                plan.results.append(apply_command(plan, command, order, deals))
                continue
            plan.results.append(SettleResult("already_processed"))
            # Released again: the worker may have died between the commit and the release.
            if isinstance(command, Cancel) and order is not None and order.deal_id \
                    is not None and order.status == OrderStatus.CANCELLED:
                plan.release.setdefault(order.id, order.product_id)
        await _write(tx, plan, found)
    if plan.events:
        ctx.outbox_written()
    await _after_commit(ctx, plan)
    return plan.results


async def _first_times(tx: SettlementTx, consumer: str,
                       commands: Sequence[Command]) -> list[bool]:
    """Whether each command is seen for the first time (by event id; none: always)."""
    new = await tx.record_first_times(
        consumer, [c.event_id for c in commands if c.event_id is not None])
    fresh = []
    for c in commands:
        if c.event_id is None:
            fresh.append(True)
        else:
            fresh.append(c.event_id in new)
            new.discard(c.event_id)  # a second copy in the same batch is a duplicate
    return fresh


async def _write(tx: SettlementTx, plan: Plan, found: dict[UUID, LockedOrder]) -> None:
    changed = [o for o in found.values() if (o.status, o.payment_id) != o.was]
    moved = await tx.cas_order_status(changed)
    if moved != len(changed):  # the rows are locked: this would be a bug
        raise RuntimeError(f"compare-and-set moved {moved} of {len(changed)} orders")
    await tx.give_back(plan.product_units, plan.returned_units, plan.remaining_units)
    await tx.add_events(plan.events, claim=False)


async def _after_commit(ctx: Context, plan: Plan) -> None:
    if plan.forget:
        try:
            await ctx.stock.forget_many([(p, o) for o, p in plan.forget.items()])
        except Exception:  # noqa: BLE001 - harmless if left: the flush drops them
            log.warning("could not drop the reservation records of %d confirmed orders",
                        len(plan.forget))
    if plan.release:
        outcomes = await ctx.stock.release_many([(p, o) for o, p in plan.release.items()])
        deferred = outcomes.count(ReleaseOutcome.NOT_OPEN)
        if deferred:
            log.info("release of %d orders deferred: the deal's Redis state is closed or "
                     "gone", deferred)


async def confirm_order(ctx: Context, order_id: UUID, *, payment_id: str | None,
                        amount: int | None = None, event_id: UUID | None = None,
                        consumer: str = GROUP) -> SettleResult:
    command = Confirm(order_id, payment_id, amount, event_id)
    return (await settle_batch(ctx, [command], consumer=consumer))[0]


async def cancel_order(ctx: Context, order_id: UUID, reason: CancelReason, *,
                       event_id: UUID | None = None, consumer: str = GROUP) -> SettleResult:
    command = Cancel(order_id, reason, event_id)
    return (await settle_batch(ctx, [command], consumer=consumer))[0]


async def expire_due_orders(ctx: Context, batch_size: int) -> int:
    """Cancel up to `batch_size` orders past their reservation and not paid in time, in one
    batch; returns how many were cancelled."""
    due = await ctx.settlement_db.claim_due_orders(batch_size)
    results = await settle_batch(ctx, [Cancel(order_id, CancelReason.EXPIRED)
                                       for order_id in due])
    return sum(r.outcome == "applied" for r in results)
