"""Bounded tables: published outbox rows and processed-event records past their retention
are deleted, a small batch per table per run, by one reconciler (the `retention` duty; the
rules: docs/scaling.md, "Bounded tables")."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncEngine

from hotdeal_core.db.retention import delete_processed_events, delete_published_outbox


@dataclass(frozen=True, slots=True)
class Purged:
    outbox: int  # published outbox rows deleted
    processed_events: int  # processed-event records deleted
    more: bool  # a batch came back full: run again at once


async def purge_expired(engine: AsyncEngine, *, outbox_hours: float, processed_hours: float,
                        batch: int) -> Purged:
    """Delete up to `batch` expired rows from each table (one transaction per table)."""
    outbox = await delete_published_outbox(engine, outbox_hours * 3600, batch)
    processed = await delete_processed_events(engine, processed_hours * 3600, batch)
    return Purged(outbox, processed, more=max(outbox, processed) >= batch)
