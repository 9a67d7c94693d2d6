"""Group commit of reserved orders: many PENDING orders and their OrderPlaced events in one
statement and one transaction (see hotdeal_core/batching.py).

The deal fence is taken once per deal of the batch (shared, in id order so that two
writers never wait on each other crosswise); the live deals and their epochs are read
after it, so a flush or a rebuild that committed meanwhile is seen (READ COMMITTED). An
order whose deal is no longer ACTIVE at its reservation's epoch is not written (fenced);
one whose id or idempotency key is already taken is not written either (ON CONFLICT DO
NOTHING: an orphan sweep voided the id, or a concurrent request with the same key won).
Each item gets its own outcome; the caller releases the reservation of every item that
was not written before it answers, and keeps it when the commit's outcome is unknown.

An order's `expires_at` is the transaction's `now()` plus its reservation's TTL: Postgres's
clock, as the expiry sweeper's, never the API host's; its OrderPlaced event says the same.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from hotdeal_core.batching import OutcomeUnknown
from hotdeal_core.db.fence import share_deal
from hotdeal_core.domain import OrderStatus
from hotdeal_core.messaging.outbox import LEASE_SECONDS, OutboxRow, json_headers
from hotdeal_core.usecases.views import OrderView
from schemas.events import OrderPlaced


@dataclass(frozen=True, slots=True)
class ReservedOrder:
    order_id: UUID
    product_id: int
    deal_id: int
    epoch: int
    user_id: str
    quantity: int
    unit_price: int
    idempotency_key: str | None
    ttl_seconds: int  # the order expires this long after its transaction's now()
    topic: str  # of its OrderPlaced event
    headers: dict[str, str] | None = None  # its request's trace context, for its outbox row


class Fenced(Exception):
    """The deal ended or was rebuilt between the reservation and the order's write."""


class NotWritten(Exception):
    """The order id or the idempotency key is already taken."""


class CommitUnknown(OutcomeUnknown):
    """The commit failed on the way: the orders may or may not be written. Their
    reservations are left to the orphan sweeper, which looks in Postgres first."""

    def __init__(self) -> None:
        super().__init__("postgres", "the order's outcome is unknown; retry with the same "
                                     "Idempotency-Key")


# now() is the transaction's start: the orders' created_at, and the base of their expiry.
_LIVE_DEALS = text("SELECT id, epoch, now() AS now FROM hot_deals "
                   "WHERE id = ANY(:ids) AND status = 'ACTIVE'")

_INSERT = text(f"""
    WITH input AS (
        SELECT * FROM unnest(CAST(:ids AS uuid[]), CAST(:product_ids AS bigint[]),
                             CAST(:deal_ids AS bigint[]), CAST(:users AS text[]),
                             CAST(:quantities AS int[]), CAST(:prices AS bigint[]),
                             CAST(:keys AS text[]), CAST(:expires AS timestamptz[]),
                             CAST(:topics AS text[]), CAST(:payloads AS jsonb[]),
                             CAST(:headers AS jsonb[]))
            AS t(id, product_id, hot_deal_id, user_id, quantity, unit_price,
                 idempotency_key, expires_at, topic, payload, headers)),
    placed AS (
        INSERT INTO orders (id, product_id, hot_deal_id, user_id, quantity, unit_price,
                            status, idempotency_key, expires_at)
        SELECT id, product_id, hot_deal_id, user_id, quantity, unit_price, 'PENDING',
               idempotency_key, expires_at FROM input
        ON CONFLICT DO NOTHING
        RETURNING id, created_at, expires_at),
    event AS (
        INSERT INTO outbox (topic, key, event_type, payload, claimed_until, headers)
        SELECT input.topic, input.id::text, 'OrderPlaced', input.payload,
               CASE WHEN :claim THEN now() + interval '{LEASE_SECONDS} seconds' END,
               input.headers
        FROM placed JOIN input USING (id)
        RETURNING id, topic, key, payload, created_at, headers)
    SELECT placed.id AS order_id, placed.created_at AS order_created_at,
           placed.expires_at, event.id,
           event.topic, event.key, event.payload, event.created_at, event.headers
    FROM placed JOIN event ON event.key = placed.id::text
""")


async def write_reserved_orders(
        engine: AsyncEngine, items: list[ReservedOrder],
        publish_now: Callable[[list[OutboxRow]], None] | None,
        ) -> list[OrderView | BaseException]:
    """Write the orders of `items` in one transaction; one outcome per item. With
    `publish_now`, the events are born claimed by this process and handed to it after the
    commit (the polling relay publishes them only if this process dies first)."""
    async with engine.connect() as conn:
        tx = await conn.begin()
        try:
            deals = sorted({item.deal_id for item in items})
            for deal_id in deals:
                await share_deal(conn, deal_id)
            found = (await conn.execute(_LIVE_DEALS, {"ids": deals})).all()
            live: dict[int, int] = {int(row.id): int(row.epoch) for row in found}
            writable = [i for i in items if live.get(i.deal_id) == i.epoch]
            rows: list[Any] = []
            if writable:
                rows = list((await conn.execute(_INSERT, _columns(
                    writable, found[0].now, publish_now))).all())
        except BaseException:
            await tx.rollback()
            raise
        try:
            await tx.commit()
        except Exception as exc:
            raise CommitUnknown() from exc
    written = {row.order_id: row for row in rows}
    if publish_now is not None and rows:
        publish_now([OutboxRow(r.id, r.topic, r.key, r.payload, r.created_at, 0, r.headers)
                     for r in rows])
    return [_outcome(item, live, written) for item in items]


def _columns(items: list[ReservedOrder], now: datetime,
             publish_now: Callable[[list[OutboxRow]], None] | None) -> dict[str, Any]:
    expires = [now + timedelta(seconds=i.ttl_seconds) for i in items]
    events = [OrderPlaced(order_id=i.order_id, product_id=i.product_id,
                          hot_deal_id=i.deal_id, user_id=i.user_id, quantity=i.quantity,
                          unit_price=i.unit_price, expires_at=e)
              for i, e in zip(items, expires, strict=True)]
    return {
        "ids": [i.order_id for i in items], "product_ids": [i.product_id for i in items],
        "deal_ids": [i.deal_id for i in items], "users": [i.user_id for i in items],
        "quantities": [i.quantity for i in items], "prices": [i.unit_price for i in items],
        "keys": [i.idempotency_key for i in items], "expires": expires,
        "topics": [i.topic for i in items], "payloads": [e.model_dump_json() for e in events],
        "headers": json_headers([i.headers for i in items], len(items)),
        "claim": publish_now is not None}


def _outcome(item: ReservedOrder, live: dict[int, int],
             written: dict[UUID, Any]) -> OrderView | BaseException:
    if live.get(item.deal_id) != item.epoch:
        return Fenced()
    row = written.get(item.order_id)
    if row is None:
        return NotWritten()
    created = row.order_created_at
    return OrderView(item.order_id, item.product_id, item.deal_id, item.user_id,
                     item.quantity, item.unit_price, OrderStatus.PENDING, None,
                     row.expires_at, created, created)
