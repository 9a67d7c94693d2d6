"""The outbox rows' claims in Postgres: claim, renew, mark published, count a failure.

Leases, owners, backoff and set-aside rows: docs/events.md, "Producing: transactional outbox"."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from hotdeal_core.messaging.outbox import OutboxRow

# A row whose send failed transiently (Kafka down) is claimed again after this long.
TRANSIENT_RETRY_SECONDS = 1.0
# The longest wait between two attempts of a row that keeps failing.
MAX_BACKOFF_SECONDS = 300.0

_CLAIM = text("""
    UPDATE outbox SET claimed_until = now() + make_interval(
        secs => CAST(:lease AS double precision)), claimed_by = :me
    WHERE id IN (
        SELECT id FROM outbox
        WHERE published_at IS NULL AND attempts < :max_attempts
          AND (claimed_until IS NULL OR claimed_until < now())
        ORDER BY id LIMIT :limit FOR UPDATE SKIP LOCKED)
    RETURNING id, topic, key, payload, created_at, attempts, headers
""")
# Keep (or take back) the claim of rows this relay holds: owned by it, or born claimed and
# not taken over since. The rows returned are this relay's to send.
_RENEW = text("""
    UPDATE outbox SET claimed_until = now() + make_interval(
        secs => CAST(:lease AS double precision)), claimed_by = :me
    WHERE id = ANY(:ids) AND published_at IS NULL AND (claimed_by IS NULL OR claimed_by = :me)
    RETURNING id
""")
_MARK = text("""
    UPDATE outbox SET published_at = now() WHERE id = ANY(:ids)
    RETURNING EXTRACT(EPOCH FROM (published_at - created_at)) AS delay
""")
# One attempt more for each failed row; the next claim waits base * 2^(attempts before).
_FAILED = text("""
    UPDATE outbox AS o SET attempts = o.attempts + 1, last_error = f.error,
        claimed_until = now() + make_interval(secs => LEAST(
            CAST(:cap AS double precision),
            CAST(:base AS double precision) * power(2, o.attempts)))
    FROM unnest(CAST(:ids AS bigint[]), CAST(:errors AS text[])) AS f(id, error)
    WHERE o.id = f.id AND o.published_at IS NULL
    RETURNING o.id, o.topic, o.key, o.event_type, o.attempts, o.last_error
""")
# Transient failures (claimed again a moment later) and rows not tried (claimed again now).
_RETRY_AFTER = text("""
    UPDATE outbox SET claimed_until = now() + make_interval(
        secs => CAST(:delay AS double precision))
    WHERE id = ANY(:ids) AND published_at IS NULL
""")
_SET_ASIDE = text("""
    SELECT count(*) FROM outbox WHERE published_at IS NULL AND attempts >= :max_attempts
""")


class FailedRow(NamedTuple):
    """A row whose failed attempt was just counted."""

    id: int
    topic: str
    key: str
    event_type: str
    attempts: int
    last_error: str


async def claim(conn: AsyncConnection, *, limit: int, max_attempts: int, me: str,
                lease: float) -> list[OutboxRow]:
    """Claim up to `limit` unclaimed (or expired) rows for relay `me`, oldest first."""
    rows = (await conn.execute(_CLAIM, {"limit": limit, "max_attempts": max_attempts,
                                        "me": me, "lease": lease})).all()
    return [OutboxRow(r.id, r.topic, r.key, r.payload, r.created_at, r.attempts, r.headers)
            for r in rows]


async def renew(conn: AsyncConnection, ids: Sequence[int], *, me: str,
                lease: float) -> set[int]:
    """Renew relay `me`'s claims on `ids`; returns the ids it holds."""
    return {int(i) for i in (await conn.execute(_RENEW, {
        "ids": list(ids), "me": me, "lease": lease})).scalars().all()}


async def mark_published(conn: AsyncConnection, ids: Sequence[int]) -> list[float]:
    """Mark rows published; returns each one's delay since it was written, in seconds."""
    return [float(d) for d in (await conn.execute(_MARK, {"ids": list(ids)})).scalars()]


async def count_failures(conn: AsyncConnection, failed: Sequence[tuple[int, str]], *,
                         base: float, cap: float) -> list[FailedRow]:
    """Count one failed attempt for each (id, error) and push its next claim back."""
    rows = (await conn.execute(_FAILED, {
        "ids": [i for i, _ in failed], "errors": [e for _, e in failed],
        "base": base, "cap": cap})).all()
    return [FailedRow(r.id, r.topic, r.key, r.event_type, r.attempts, r.last_error)
            for r in rows]


async def retry_after(conn: AsyncConnection, ids: Sequence[int], delay: float) -> None:
    """Let the rows be claimed again `delay` seconds from now (0: at once)."""
    await conn.execute(_RETRY_AFTER, {"ids": list(ids), "delay": delay})


_OWED = text("""
    SELECT count(*) FROM outbox WHERE published_at IS NULL AND attempts < :max_attempts
""")


async def count_owed(conn: AsyncConnection, max_attempts: int) -> int:
    """How many rows the relays still have to publish (unpublished, not set aside)."""
    return int((await conn.execute(_OWED, {"max_attempts": max_attempts})).scalar_one())


async def count_set_aside(conn: AsyncConnection, max_attempts: int) -> int:
    """How many rows are set aside now (unpublished, out of attempts)."""
    return int((await conn.execute(_SET_ASIDE, {"max_attempts": max_attempts})).scalar_one())
