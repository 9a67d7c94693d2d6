"""Transactional outbox, the writing side: events are written in the same Postgres
transaction as the state change they describe (`add_event`, or `add_events` for a group
commit), so an event exists if and only if its change committed. The relay
(`hotdeal_core.messaging.relay`) publishes the rows to Kafka and marks them sent.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from hotdeal_core.db.tables import outbox
from hotdeal_core.messaging.topics import Topics, event_key
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


async def add_event(conn: AsyncConnection, topics: Topics, event: AnyEvent) -> None:
    await conn.execute(outbox.insert().values(
        topic=topics.of(event), key=event_key(event), event_type=event.type,
        payload=event.model_dump(mode="json")))


_ADD_EVENTS = text(f"""
    INSERT INTO outbox (topic, key, event_type, payload, claimed_until)
    SELECT t.topic, t.key, t.event_type, t.payload,
           CASE WHEN :claim THEN now() + interval '{LEASE_SECONDS} seconds' END
    FROM unnest(CAST(:topics AS text[]), CAST(:keys AS text[]), CAST(:types AS text[]),
                CAST(:payloads AS jsonb[])) AS t(topic, key, event_type, payload)
    RETURNING id, topic, key, payload, created_at
""")


async def add_events(conn: AsyncConnection, topics: Topics, events: Sequence[AnyEvent], *,
                     claim: bool) -> list[OutboxRow]:
    """Many events in one statement. `claim`: the rows are born claimed by this process,
    which publishes them itself after the commit (`OutboxRelay.publish_now`)."""
    if not events:
        return []
    rows = (await conn.execute(_ADD_EVENTS, {
        "topics": [topics.of(e) for e in events], "keys": [event_key(e) for e in events],
        "types": [e.type for e in events], "payloads": [e.model_dump_json() for e in events],
        "claim": claim})).all()
    return [OutboxRow(r.id, r.topic, r.key, r.payload, r.created_at) for r in rows]


