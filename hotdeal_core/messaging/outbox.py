"""Transactional outbox, the writing side: events are written in the same Postgres
transaction as the state change they describe (`add_event`, or `add_events` for a group
commit), so an event exists if and only if its change committed. The relay
(`hotdeal_core.messaging.relay`) publishes the rows to Kafka and marks them sent.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from hotdeal_core.db.tables import outbox
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


async def add_event(conn: AsyncConnection, topics: Topics, event: AnyEvent) -> None:
    await conn.execute(outbox.insert().values(
        topic=topics.of(event), key=event_key(event), event_type=event.type,
        payload=event.model_dump(mode="json"), headers=tracing.headers()))


_ADD_EVENTS = text(f"""
    INSERT INTO outbox (topic, key, event_type, payload, claimed_until, headers)
    SELECT t.topic, t.key, t.event_type, t.payload,
           CASE WHEN :claim THEN now() + interval '{LEASE_SECONDS} seconds' END, t.headers
    FROM unnest(CAST(:topics AS text[]), CAST(:keys AS text[]), CAST(:types AS text[]),
                CAST(:payloads AS jsonb[]), CAST(:headers AS jsonb[]))
        AS t(topic, key, event_type, payload, headers)
    RETURNING id, topic, key, payload, created_at, headers
""")


async def add_events(conn: AsyncConnection, topics: Topics, events: Sequence[AnyEvent], *,
                     claim: bool,
                     headers: Sequence[dict[str, str] | None] | None = None) -> list[OutboxRow]:
    """Many events in one statement. `claim`: the rows are born claimed by this process,
    which publishes them itself after the commit (`OutboxRelay.publish_now`). `headers`:
    each event's trace context (a group commit's callers each have their own)."""
    if not events:
        return []
    rows = (await conn.execute(_ADD_EVENTS, {
        "topics": [topics.of(e) for e in events], "keys": [event_key(e) for e in events],
        "types": [e.type for e in events], "payloads": [e.model_dump_json() for e in events],
        "headers": json_headers(headers, len(events)), "claim": claim})).all()
    return [OutboxRow(r.id, r.topic, r.key, r.payload, r.created_at, 0, r.headers)
            for r in rows]


def json_headers(headers: Sequence[dict[str, str] | None] | None, n: int) -> list[str | None]:
    """`headers` as the JSON texts of a jsonb[] parameter (all NULL when there are none)."""
    if headers is None:
        return [None] * n
    return [None if h is None else json.dumps(h) for h in headers]


