"""Group commit of reserved orders: many PENDING orders and their OrderPlaced events in one
statement and one transaction, fenced by each deal's status and epoch (docs/architecture.md,
"Orders")."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from hotdeal_core.db.fence import share_deal
from hotdeal_core.domain import DealStatus, OrderStatus
from hotdeal_core.messaging.outbox import insert_outbox_sql, json_headers, outbox_row
from hotdeal_core.ports.orders import (
    CommitUnknown,
    Fenced,
    NotWritten,
    PublishNow,
    ReservedOrder,
)
from hotdeal_core.usecases.views import OrderView
from schemas.events import OrderPlaced

# now() is the transaction's start: the orders' created_at, and the base of their expiry.
_LIVE_DEALS = text("SELECT id, epoch, now() AS now FROM hot_deals "
                   "WHERE id = ANY(:ids) AND status = :active")

# One statement: the orders, then (the outbox's one INSERT) the events of those written.
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
        SELECT id, product_id, hot_deal_id, user_id, quantity, unit_price, :pending,
               idempotency_key, expires_at FROM input
        ON CONFLICT DO NOTHING
        RETURNING id, created_at, expires_at),
    event AS ({insert_outbox_sql('''(
        SELECT input.topic, input.id::text AS key, CAST(:event_type AS text) AS event_type,
               input.payload, input.headers
        FROM placed JOIN input USING (id)) AS src''')})
    SELECT placed.id AS order_id, placed.created_at AS order_created_at,
           placed.expires_at, event.id,
           event.topic, event.key, event.payload, event.created_at, event.headers
    FROM placed JOIN event ON event.key = placed.id::text
""")


async def write_reserved_orders(engine: AsyncEngine, items: list[ReservedOrder],
                                publish_now: PublishNow | None,
                                ) -> list[OrderView | BaseException]:
    """Write the orders of `items` in one transaction; one outcome per item. With
    `publish_now`, the events are born claimed and handed to it after the commit."""
    async with engine.connect() as conn:
        tx = await conn.begin()
        try:
            # Shared, in id order: two writers never wait on each other crosswise; the
            # deals are read after it, so a flush or rebuild that committed is seen.
            deals = sorted({item.deal_id for item in items})
            for deal_id in deals:
                await share_deal(conn, deal_id)
            found = (await conn.execute(_LIVE_DEALS, {"ids": deals,
                                                      "active": DealStatus.ACTIVE})).all()
            live: dict[int, int] = {int(row.id): int(row.epoch) for row in found}
            writable = [i for i in items if live.get(i.deal_id) == i.epoch]
            rows: list[Any] = []
            if writable:
                rows = list((await conn.execute(_INSERT, _columns(
                    writable, found[0].now, publish_now is not None))).all())
        except BaseException:
            await tx.rollback()
            raise
        try:
            await tx.commit()
        except Exception as exc:
            raise CommitUnknown() from exc
    written = {row.order_id: row for row in rows}
    if publish_now is not None and rows:
        publish_now([outbox_row(r) for r in rows])
    return [_outcome(item, live, written) for item in items]


def _columns(items: list[ReservedOrder], now: datetime, claim: bool) -> dict[str, Any]:
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
        "pending": OrderStatus.PENDING, "event_type": events[0].type, "claim": claim}


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
