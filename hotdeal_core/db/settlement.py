"""The settlement's SQL, and `PostgresSettlement`: the settlement port over an engine."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from uuid import UUID

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from hotdeal_core.db import payments
from hotdeal_core.db.books import give_back_to_product
from hotdeal_core.db.fence import share_deal
from hotdeal_core.db.settlement_rules import DUE, PAID_IN_TIME
from hotdeal_core.messaging import outbox
from hotdeal_core.messaging.outbox import OutboxRow
from hotdeal_core.messaging.topics import Topics
from hotdeal_core.ports.settlement import DealState, LockedOrder, PaymentFact
from schemas.events import AnyEvent

_FIRST_TIME = text("""
    INSERT INTO processed_events (consumer, event_id)
    SELECT CAST(:consumer AS text), e FROM unnest(CAST(:ids AS uuid[])) AS e
    ON CONFLICT DO NOTHING RETURNING event_id
""")
_DEALS_OF = text("""
    SELECT DISTINCT hot_deal_id FROM orders
    WHERE id = ANY(CAST(:ids AS uuid[])) AND hot_deal_id IS NOT NULL
""")
_DEALS = text("SELECT id, status, stock_backend FROM hot_deals "
              "WHERE id = ANY(CAST(:ids AS bigint[]))")
_LOCK = text(f"""
    SELECT id, product_id, hot_deal_id, user_id, quantity, status, payment_id,
           {PAID_IN_TIME} AS paid
    FROM orders WHERE id = ANY(CAST(:ids AS uuid[])) ORDER BY id FOR UPDATE
""")
# Each row moves only from the (status, payment_id) it was read with, under the row lock.
_CAS = text("""
    UPDATE orders AS o SET status = u.status, payment_id = u.payment_id,
        cancel_reason = u.cancel_reason, updated_at = now()
    FROM unnest(CAST(:ids AS uuid[]), CAST(:was_status AS text[]),
                CAST(:was_payment AS text[]), CAST(:status AS text[]),
                CAST(:payment AS text[]), CAST(:reason AS text[]))
        AS u(id, was_status, was_payment, status, payment_id, cancel_reason)
    WHERE o.id = u.id AND o.status = u.was_status
      AND o.payment_id IS NOT DISTINCT FROM u.was_payment
    RETURNING o.id
""")
_DEAL_UNITS = text("UPDATE hot_deals SET returned_stock = returned_stock + :r, "
                   "remaining_stock = remaining_stock + :m, updated_at = now() WHERE id = :d")
_DUE = text(f"SELECT id FROM orders WHERE {DUE} ORDER BY expires_at LIMIT :n")


async def record_first_times(conn: AsyncConnection, consumer: str,
                             event_ids: Sequence[UUID]) -> set[UUID]:
    """Sorted: two batches sharing events lock their keys in the same order."""
    if not event_ids:
        return set()
    ids = sorted(set(event_ids))
    return set((await conn.execute(_FIRST_TIME, {"consumer": consumer, "ids": ids}))
               .scalars())


async def fence_deals_of(conn: AsyncConnection, order_ids: Sequence[UUID]
                         ) -> dict[int, DealState]:
    """In deal id order: no deadlock with a flush waiting for one of them."""
    if not order_ids:
        return {}
    deal_ids = sorted(int(d) for d in (await conn.execute(
        _DEALS_OF, {"ids": list(order_ids)})).scalars())
    for deal_id in deal_ids:
        await share_deal(conn, deal_id)
    rows = (await conn.execute(_DEALS, {"ids": deal_ids})).all() if deal_ids else []
    return {int(r.id): DealState(int(r.id), r.status, r.stock_backend) for r in rows}


async def lock_orders(conn: AsyncConnection, order_ids: Sequence[UUID]
                      ) -> dict[UUID, LockedOrder]:
    rows = (await conn.execute(_LOCK, {"ids": sorted(set(order_ids))})).all()
    return {r.id: LockedOrder(r.id, r.product_id, r.hot_deal_id, r.user_id, r.quantity,
                              r.status, r.payment_id, r.paid, (r.status, r.payment_id))
            for r in rows}


async def cas_order_status(conn: AsyncConnection, changed: Sequence[LockedOrder]) -> int:
    if not changed:
        return 0
    return len((await conn.execute(_CAS, {
        "ids": [o.id for o in changed], "was_status": [o.was[0] for o in changed],
        "was_payment": [o.was[1] for o in changed], "status": [o.status for o in changed],
        "payment": [o.payment_id for o in changed],
        "reason": [o.cancel_reason for o in changed]})).all())


async def give_back(conn: AsyncConnection, product_units: Mapping[int, int],
                    returned_units: Mapping[int, int],
                    remaining_units: Mapping[int, int]) -> None:
    """One row at a time, in id order: every batch locks hot rows in the same order."""
    for pid, units in sorted(product_units.items()):
        await give_back_to_product(conn, pid, units)
    for deal_id in sorted(returned_units.keys() | remaining_units.keys()):
        await conn.execute(_DEAL_UNITS, {"r": returned_units.get(deal_id, 0),
                                         "m": remaining_units.get(deal_id, 0), "d": deal_id})


async def claim_due_orders(conn: AsyncConnection, limit: int) -> list[UUID]:
    return list((await conn.execute(_DUE, {"n": limit})).scalars().all())


class PostgresTx:
    """The port's transaction: the named functions above over one connection."""

    def __init__(self, conn: AsyncConnection, topics: Topics) -> None:
        self._conn, self._topics = conn, topics

    async def record_first_times(self, consumer: str, event_ids: Sequence[UUID]
                                 ) -> set[UUID]:
        return await record_first_times(self._conn, consumer, event_ids)

    async def fence_deals_of(self, order_ids: Sequence[UUID]) -> dict[int, DealState]:
        return await fence_deals_of(self._conn, order_ids)

    async def lock_orders(self, order_ids: Sequence[UUID]) -> dict[UUID, LockedOrder]:
        return await lock_orders(self._conn, order_ids)

    async def cas_order_status(self, changed: Sequence[LockedOrder]) -> int:
        return await cas_order_status(self._conn, changed)

    async def give_back(self, product_units: Mapping[int, int],
                        returned_units: Mapping[int, int],
                        remaining_units: Mapping[int, int]) -> None:
        await give_back(self._conn, product_units, returned_units, remaining_units)

    async def add_events(self, events: Sequence[AnyEvent], *, claim: bool,
                         headers: Sequence[dict[str, str] | None] | None = None,
                         ) -> list[OutboxRow]:
        return await outbox.add_events(self._conn, self._topics, events, claim=claim,
                                       headers=headers)

    async def order_totals(self, order_ids: Sequence[UUID]) -> dict[UUID, int]:
        return await payments.order_totals(self._conn, order_ids)

    async def record_payment_facts(self, facts: Sequence[PaymentFact]
                                   ) -> set[tuple[str, str]]:
        return await payments.record_payment_facts(self._conn, facts)

    async def mark_paid_in_time(self, order_ids: Sequence[UUID]) -> None:
        await payments.mark_paid_in_time(self._conn, order_ids)

    async def first_outcomes(self, payment_ids: Sequence[str]) -> dict[tuple[str, str], str]:
        return await payments.first_outcomes(self._conn, payment_ids)


class PostgresSettlement:
    """The settlement port over an engine (hotdeal_core/ports/settlement.py)."""

    def __init__(self, engine: AsyncEngine, topics: Topics) -> None:
        self._engine, self._topics = engine, topics

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[PostgresTx]:
        async with self._engine.begin() as conn:
            yield PostgresTx(conn, self._topics)

    async def claim_due_orders(self, limit: int) -> list[UUID]:
        async with self._engine.connect() as conn:
            return await claim_due_orders(conn, limit)
