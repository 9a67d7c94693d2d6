"""Bounded tables: published outbox rows and processed-event records past their retention
are deleted, a small batch per statement, by one reconciler (the `retention` duty).

- A published outbox row is never read again by the app (the relay claims, renews, retries
  only rows with `published_at IS NULL`); it is kept OUTBOX_RETENTION_HOURS as the record of
  what was sent. An unpublished row (waiting, or set aside) is never deleted.
- A processed-event record is what makes a redelivered event a no-op, so it is kept
  PROCESSED_EVENTS_RETENTION_HOURS, which settings.py requires to be longer than any message
  can stay in its topic (`longest_redelivery_hours`): once deleted, no copy of its event
  can arrive any more.
- Orders and payments are the record of the business: never deleted here.

One batch per table per run, each its own short transaction (5,000 rows: 4-13 ms measured), so
no delete holds locks or a snapshot for long and autovacuum reclaims the space as it goes;
the duty runs again at once while a batch came back full. Two runs at once (the lock's one
window) only split the work: a row deleted by one is skipped by the other.
Why deletes and not time partitions: docs/scaling.md, "Bounded tables".
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

# Each finds a batch by its index (ix_outbox_published_at, ix_processed_events_processed_at)
# and deletes it by the rows' ctid (a TID scan): measured 2-3 times faster than deleting by
# key (`id IN (...)` / `(consumer, event_id) IN (...)`), which looks every row up again
# through the primary key (benchmarks/retention.py). The ctids are read and used in one
# statement; a row updated in between (only unpublished outbox rows ever are) is skipped.
_OUTBOX = text("""
    DELETE FROM outbox WHERE ctid = ANY(ARRAY(
        SELECT ctid FROM outbox
        WHERE published_at IS NOT NULL
          AND published_at < now() - make_interval(secs => CAST(:seconds AS double precision))
        LIMIT :n))
""")
_PROCESSED = text("""
    DELETE FROM processed_events WHERE ctid = ANY(ARRAY(
        SELECT ctid FROM processed_events
        WHERE processed_at < now() - make_interval(secs => CAST(:seconds AS double precision))
        LIMIT :n))
""")


@dataclass(frozen=True, slots=True)
class Purged:
    outbox: int  # published outbox rows deleted
    processed_events: int  # processed-event records deleted
    more: bool  # a batch came back full: run again at once


async def purge_expired(engine: AsyncEngine, *, outbox_hours: float, processed_hours: float,
                        batch: int) -> Purged:
    """Delete up to `batch` expired rows from each table (one transaction per table)."""
    deleted = []
    for statement, hours in ((_OUTBOX, outbox_hours), (_PROCESSED, processed_hours)):
        async with engine.begin() as conn:
            result = await conn.execute(statement, {"seconds": hours * 3600, "n": batch})
            deleted.append(int(result.rowcount))
    return Purged(deleted[0], deleted[1], more=max(deleted) >= batch)
