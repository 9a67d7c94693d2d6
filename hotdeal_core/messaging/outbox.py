"""Transactional outbox, the writing side: an event is written in the transaction of the
change it describes, so it exists if and only if that change committed. The one INSERT of
outbox rows in the code base is `insert_outbox_sql`; the relay publishes the rows."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from hotdeal_core.messaging.topics import Topics, event_key
from hotdeal_core.observability import tracing
from schemas.events import AnyEvent

# How long a claim (or a group commit's born claim) holds a row: if its process dies before
# publishing, another relay publishes the row this long after. Longer than a publish takes
# normally; a slower one (Kafka failing over) may publish a row twice (consumers dedupe).
LEASE_SECONDS = 5


@dataclass(frozen=True, slots=True)
class OutboxRow:
    """An outbox row to publish (a claimed one, or one born claimed by its writer)."""

    id: int
    topic: str
    key: str
    payload: Any  # the event: a dict from JSONB, or its JSON text
    created_at: datetime
    attempts: int = 0
    # The W3C trace context of the request that wrote it (None: tracing was off), sent as
    # the Kafka record's headers.
    headers: dict[str, str] | None = None


def insert_outbox_sql(source: str) -> str:
    """The outbox INSERT, its rows read from `source` (a FROM item with the columns topic,
    key, event_type, payload, headers); binds `:claim` (born claimed by this process)."""
    return f"""
    INSERT INTO outbox (topic, key, event_type, payload, claimed_until, headers)
    SELECT src.topic, src.key, src.event_type, src.payload,
           CASE WHEN :claim THEN now() + interval '{LEASE_SECONDS} seconds' END, src.headers
    FROM {source}
    RETURNING id, topic, key, payload, created_at, headers"""


_ADD_EVENTS = text(insert_outbox_sql("""
    unnest(CAST(:topics AS text[]), CAST(:keys AS text[]), CAST(:types AS text[]),
           CAST(:payloads AS jsonb[]), CAST(:headers AS jsonb[]))
        AS src(topic, key, event_type, payload, headers)"""))


def outbox_row(row: Any) -> OutboxRow:
    """A row RETURNING by `insert_outbox_sql`, as the relay takes it."""
    return OutboxRow(row.id, row.topic, row.key, row.payload, row.created_at, 0, row.headers)


async def add_event(conn: AsyncConnection, topics: Topics, event: AnyEvent) -> None:
    """One event, with this request's trace context."""
    await add_events(conn, topics, [event], claim=False, headers=[tracing.headers()])


async def add_events(conn: AsyncConnection, topics: Topics, events: Sequence[AnyEvent], *,
                     claim: bool,
                     headers: Sequence[dict[str, str] | None] | None = None) -> list[OutboxRow]:
    """Many events in one statement. `claim`: born claimed by this process, which publishes
    them after the commit (`OutboxRelay.publish_now`). `headers`: each event's trace context."""
    if not events:
        return []
    rows = (await conn.execute(_ADD_EVENTS, {
        "topics": [topics.of(e) for e in events], "keys": [event_key(e) for e in events],
        "types": [e.type for e in events], "payloads": [e.model_dump_json() for e in events],
        "headers": json_headers(headers, len(events)), "claim": claim})).all()
    return [outbox_row(r) for r in rows]


def json_headers(headers: Sequence[dict[str, str] | None] | None, n: int) -> list[str | None]:
    """`headers` as the JSON texts of a jsonb[] parameter (all NULL when there are none)."""
    if headers is None:
        return [None] * n
    return [None if h is None else json.dumps(h) for h in headers]
