"""Transactional outbox: events are written in the same Postgres transaction as the state
change, then a relay publishes them to Kafka and marks them sent.

The relay claims a batch with `FOR UPDATE SKIP LOCKED` and a short lease (claimed_until),
commits the claim, publishes (idempotent producer, acks=all, key = entity id), then marks
the rows published. No DB transaction is held across the Kafka await; two relays never
publish the same row at once; a relay that dies mid-batch leaves rows whose lease expires
and are published again (at-least-once: consumers are idempotent by event_id).

The lease is short (a dead relay's rows are republished within seconds) but a live relay
keeps it: while a send waits on Kafka (a broker restarting: up to the producer's request
timeout, far longer than the lease) a heartbeat renews the claims of the rows in flight, so
no other relay claims and sends them a second time meanwhile. A claim names its relay
(`claimed_by`); rows born claimed by a group commit have no owner until their relay renews
them. Before sending rows handed over a while ago (`publish_now`), the relay renews them
first and drops those another relay took over after their lease expired.

Rows are published independently: a row that fails does not fail the rest of its batch.

- A transient failure (Kafka unreachable or timing out, an error aiokafka marks retriable)
  says nothing about the row: it is claimed again TRANSIENT_RETRY_SECONDS later, without
  counting an attempt, for as long as the outage lasts.
- Any other failure (MessageSizeTooLargeError, a topic we may not write to, a payload that
  does not encode) counts an attempt: `attempts` is incremented, `last_error` keeps the
  reason, and the row's next claim waits an exponential backoff (`retry_backoff_base`
  seconds, doubled per attempt, capped at MAX_BACKOFF_SECONDS). A row that reaches
  `max_attempts` (OUTBOX_MAX_ATTEMPTS) is **set aside**: the claim skips it from then on, an
  error is logged once, `set_aside_total` counts it and `set_aside_count()` tells how many
  rows are set aside. Once the cause is fixed, `UPDATE outbox SET attempts = 0 WHERE id =
  ...` has it published.
- A row that failed before is sent on its own (awaited before the next one), so that it
  cannot fail its neighbours again: the broker refuses a whole produce batch (every row of
  one partition in one request) for one bad record.
- After the broker refused a batch, the idempotent producer's sequence numbers for that
  partition no longer match the broker's (every later send there fails with
  OutOfOrderSequenceNumber, and aiokafka does not recover from it): the relay replaces its
  producer (`producer_factory`) before sending anything else. Those producer-state errors
  are never counted against a row.

Ordering caveat: within one key, events are published in the order they were written only
while none of them fails. A row that is retried later, or set aside, is overtaken by the
later rows of its key (e.g. an OrderCancelled published while the OrderPlaced before it is
set aside). Consumers must not assume that they saw every earlier event of a key.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import (
    InvalidProducerEpoch,
    InvalidProducerIdMapping,
    KafkaConnectionError,
    KafkaError,
    KafkaTimeoutError,
    OutOfOrderSequenceNumber,
    ProducerFenced,
    UnknownProducerId,
)
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from hotdeal_core.db.tables import outbox
from hotdeal_core.kafka_topics import ensure_topics
from hotdeal_core.observability.metrics import OUTBOX_PUBLISH_DELAY, OUTBOX_PUBLISHED
from hotdeal_core.topics import Topics, event_key
from schemas.events import AnyEvent

log = logging.getLogger(__name__)

# How long a claim (or a group commit's born claim) holds a row: if its process dies before
# publishing, another relay publishes the row this long after. Longer than a publish takes
# normally; a slower one (Kafka failing over) may publish a row twice (consumers dedupe).
LEASE_SECONDS = 5
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
    RETURNING id, topic, key, payload, created_at, attempts
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


# The idempotent producer's own state is out of step with the broker's: not the row's fault.
_PRODUCER_STATE_ERRORS = (OutOfOrderSequenceNumber, UnknownProducerId, InvalidProducerEpoch,
                          InvalidProducerIdMapping, ProducerFenced)


def is_transient(exc: BaseException) -> bool:
    """A failed send that says nothing about the row: retried without counting an attempt."""
    if isinstance(exc, (KafkaConnectionError, KafkaTimeoutError, *_PRODUCER_STATE_ERRORS)):
        return True
    if isinstance(exc, KafkaError):
        return bool(exc.retriable)
    # Socket errors and timeouts (the builtin TimeoutError is asyncio's), a cancelled send.
    return isinstance(exc, OSError | asyncio.CancelledError)


def _describe(exc: BaseException) -> str:
    text_ = str(exc)
    name = type(exc).__name__
    return (text_ if name in text_ else f"{name}: {text_}")[:2000]


_NOT_TRIED = object()  # a row left for the next batch (the producer is being replaced)
# Rows handed over for direct publication beyond this wait for the polling relay instead.
MAX_DIRECT_ROWS = 100_000


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


def make_producer(bootstrap_servers: str) -> AIOKafkaProducer:
    # Measured (python -m benchmarks.producer): linger 2 ms with 256 KB batches sent the most
    # events per client CPU second; gzip only cost CPU on these links. acks=all and
    # idempotence are not negotiable (no lost or doubled event on a broker failover).
    return AIOKafkaProducer(bootstrap_servers=bootstrap_servers, enable_idempotence=True,
                            acks="all", linger_ms=2, max_batch_size=262_144,
                            request_timeout_ms=15000)


@dataclass
class OutboxRelay:
    engine: AsyncEngine
    producer: AIOKafkaProducer
    bootstrap_servers: str = ""
    batch_size: int = 500
    poll_interval: float = 0.05
    published_total: int = 0  # also in hotdeal_outbox_published_total, with every process's
    # Rows this relay set aside (each row is counted once, by the relay that made its last
    # attempt); set_aside_count() asks the database for all of them.
    set_aside_total: int = 0
    connected: bool = False
    # Created (or grown) before the first publish; see hotdeal_core.kafka_topics.
    topics: list[str] = field(default_factory=list)
    partitions: int = 6
    replication_factor: int = -1  # -1: the brokers' default.replication.factor
    # A row that failed (not transiently) this many times is set aside (OUTBOX_MAX_ATTEMPTS).
    max_attempts: int = 10
    # The wait before a failed row's 2nd attempt, doubled for each further one.
    retry_backoff_base: float = 1.0
    # Builds a new producer when the current one is out of step with the broker (see the
    # module docstring). Without one, such a partition stays blocked until a restart.
    producer_factory: Callable[[], AIOKafkaProducer] | None = None
    _topics_ready: bool = False
    _wake: asyncio.Event = field(default_factory=asyncio.Event)  # claim now
    _signal: asyncio.Event = field(default_factory=asyncio.Event)  # something to do
    # Rows handed over by publish_now, with when (monotonic): older ones are renewed first.
    _direct: list[tuple[float, OutboxRow]] = field(default_factory=list)
    # This relay's name in claimed_by; the lease of its claims.
    relay_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    lease_seconds: float = LEASE_SECONDS
    _task: asyncio.Task[None] | None = None

    def wake(self) -> None:
        """Called after a commit that wrote outbox rows: publish now, don't wait for the poll."""
        self._wake.set()
        self._signal.set()

    def publish_now(self, rows: list[OutboxRow]) -> None:
        """Rows this process wrote born claimed (a group commit of orders): publish them
        without claiming them first. If the process dies before, their lease expires and
        the polling relay of any process publishes them."""
        if len(self._direct) < MAX_DIRECT_ROWS:
            now = time.monotonic()
            self._direct.extend((now, r) for r in rows)
            self._signal.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="outbox-relay")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self.producer.stop()  # also a producer never started (nothing to flush)
        self.connected = False

    async def connect(self) -> None:
        """Start the producer (and create the topics, the first time); retries until Kafka
        answers. Kafka may be down at start-up: orders keep being accepted (the outbox holds
        their events) and the relay keeps trying."""
        while not self.connected:
            try:
                if self.topics and not self._topics_ready:
                    await ensure_topics(self.bootstrap_servers, self.topics, self.partitions,
                                        self.replication_factor)
                    self._topics_ready = True
                await self.producer.start()
                self.connected = True
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001
                log.warning("outbox relay: Kafka unreachable (%s); retrying", exc)
                await asyncio.sleep(1.0)

    async def _run(self) -> None:
        last_claim = -self.poll_interval
        while True:
            direct, self._direct = self._direct, []
            published = 0
            try:
                if direct:
                    published += await self.publish_rows(await self.still_ours(direct))
                if self._wake.is_set() or time.monotonic() - last_claim >= self.poll_interval:
                    self._wake.clear()
                    last_claim = time.monotonic()
                    published += await self.publish_batch()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("outbox relay: batch failed; retrying")
                published = 0
                await asyncio.sleep(1.0)
            if not self._direct and published < self.batch_size:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._signal.wait(), self.poll_interval)
                self._signal.clear()

    async def still_ours(self, direct: Sequence[tuple[float, OutboxRow]]) -> list[OutboxRow]:
        """Handed-over rows minus those whose born claim may have expired and that another
        relay has taken over since (it publishes them)."""
        horizon = time.monotonic() - self.lease_seconds / 2
        fresh = [r for t, r in direct if t >= horizon]
        stale = [r for t, r in direct if t < horizon]
        if not stale:
            return fresh
        owned = await self.renew([r.id for r in stale])
        if len(owned) < len(stale):
            log.warning("outbox relay: %d handed-over rows were taken over by another relay "
                        "(their lease expired while this one waited)", len(stale) - len(owned))
        return fresh + [r for r in stale if r.id in owned]

    async def renew(self, ids: Sequence[int]) -> set[int]:
        """Renew this relay's claims on `ids`; returns the ids it holds."""
        async with self.engine.begin() as conn:
            return {int(i) for i in (await conn.execute(_RENEW, {
                "ids": list(ids), "me": self.relay_id, "lease": self.lease_seconds})
            ).scalars().all()}

    async def _heartbeat(self, ids: Sequence[int]) -> None:
        """While a send is in flight: renew its rows' claims every third of the lease."""
        while True:
            await asyncio.sleep(self.lease_seconds / 3)
            try:
                held = await self.renew(ids)
            except Exception as exc:  # noqa: BLE001 - Postgres away: the next beat retries
                log.warning("outbox relay: could not renew %d claims: %s", len(ids), exc)
                continue
            if len(held) < len(ids):
                log.warning("outbox relay: %d claims lost while sending (published twice)",
                            len(ids) - len(held))

    async def publish_batch(self) -> int:
        """Claim a batch, send its rows, record each row's outcome; returns how many rows
        were published."""
        if not self.connected:
            await self.connect()
        async with self.engine.begin() as conn:
            claimed = (await conn.execute(_CLAIM, {
                "limit": self.batch_size, "max_attempts": self.max_attempts,
                "me": self.relay_id, "lease": self.lease_seconds})).all()
        return await self.publish_rows(
            [OutboxRow(r.id, r.topic, r.key, r.payload, r.created_at, r.attempts)
             for r in claimed])

    async def publish_rows(self, rows: Sequence[OutboxRow]) -> int:
        """Send rows this process holds a claim on; returns how many were published."""
        if not rows:
            return 0
        if not self.connected:
            await self.connect()
        rows = sorted(rows, key=lambda r: r.id)
        heartbeat = asyncio.create_task(self._heartbeat([r.id for r in rows]))
        try:
            outcome, broken = await self._send_all(rows)
        finally:
            heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await heartbeat
        published = await self._record(rows, outcome)
        if broken:
            await self._replace_producer()
        return published

    async def _send_all(self, rows: Sequence[OutboxRow]) -> tuple[dict[int, object], bool]:
        """Each row's outcome (None: acknowledged, its exception, or _NOT_TRIED), and whether
        the producer must be replaced before it sends anything else."""
        outcome: dict[int, object] = {}
        broken = False  # the producer must be replaced before it sends anything else
        # Rows that failed before: one at a time, each alone in its produce request.
        for r in (r for r in rows if r.attempts > 0):
            if broken:
                outcome[r.id] = _NOT_TRIED
                continue
            (outcome[r.id],), broken = await self._send([r])
        fresh = [r for r in rows if r.attempts == 0]
        if broken:
            outcome.update((r.id, _NOT_TRIED) for r in fresh)
        elif fresh:
            errors, broken = await self._send(fresh)
            outcome.update(zip((r.id for r in fresh), errors, strict=True))
        return outcome, broken

    async def _send(self, rows: Sequence[Any]) -> tuple[list[BaseException | None], bool]:
        """Send `rows` pipelined; each row's error (None: acknowledged), and whether the
        producer is now out of step with the broker."""
        sent: list[asyncio.Future[Any] | BaseException] = []
        for r in rows:
            try:  # send() itself refuses some rows (too large, buffer full): no future then
                sent.append(await self.producer.send(
                    r.topic, value=_encode(r.payload), key=r.key.encode()))
            except Exception as exc:  # noqa: BLE001 - recorded against the row
                sent.append(exc)
        futures = [s for s in sent if isinstance(s, asyncio.Future)]
        acks = iter(await asyncio.gather(*futures, return_exceptions=True))
        errors: list[BaseException | None] = []
        broken = False
        for s in sent:
            if isinstance(s, asyncio.Future):
                ack = next(acks)
                error = ack if isinstance(ack, BaseException) else None
                # The broker refused a request: the sequence numbers are out of step now.
                broken = broken or (error is not None and not is_transient(error))
            else:
                error = s
            broken = broken or isinstance(error, _PRODUCER_STATE_ERRORS)
            errors.append(error)
        return errors, broken

    async def _record(self, rows: Sequence[Any], outcome: dict[int, object]) -> int:
        published = [r.id for r in rows if outcome[r.id] is None]
        not_tried = [r.id for r in rows if outcome[r.id] is _NOT_TRIED]
        transient: list[int] = []
        failed: list[tuple[int, str]] = []
        for r in rows:
            error = outcome[r.id]
            if isinstance(error, BaseException):
                if is_transient(error):
                    transient.append(r.id)
                else:
                    failed.append((r.id, _describe(error)))
        if transient:
            first = outcome[transient[0]]
            assert isinstance(first, BaseException)
            log.warning("outbox relay: %d rows not sent (%s); retrying", len(transient),
                        _describe(first))
        counted: Sequence[Any] = ()
        delays: Sequence[Any] = ()
        async with self.engine.begin() as conn:
            if published:
                delays = (await conn.execute(_MARK, {"ids": published})).scalars().all()
            if failed:
                counted = (await conn.execute(_FAILED, {
                    "ids": [i for i, _ in failed], "errors": [e for _, e in failed],
                    "base": self.retry_backoff_base, "cap": MAX_BACKOFF_SECONDS})).all()
            if transient:
                await conn.execute(_RETRY_AFTER, {"ids": transient,
                                                  "delay": TRANSIENT_RETRY_SECONDS})
            if not_tried:
                await conn.execute(_RETRY_AFTER, {"ids": not_tried, "delay": 0.0})
        for delay in delays:
            OUTBOX_PUBLISH_DELAY.observe(float(delay))
        self.published_total += len(published)
        OUTBOX_PUBLISHED.inc(len(published))
        for row in counted:
            self._report_failure(row)
        return len(published)

    def _report_failure(self, row: Any) -> None:
        if row.attempts >= self.max_attempts:
            self.set_aside_total += 1
            log.error("outbox relay: row %s (%s to %s, key %s) set aside after %d failed "
                      "attempts; last error: %s", row.id, row.event_type, row.topic, row.key,
                      row.attempts, row.last_error)
        else:
            log.warning("outbox relay: row %s (%s to %s) failed (attempt %d of %d), retried "
                        "later: %s", row.id, row.event_type, row.topic, row.attempts,
                        self.max_attempts, row.last_error)

    async def _replace_producer(self) -> None:
        if self.producer_factory is None:
            log.error("outbox relay: the producer is out of step with the broker and cannot "
                      "be replaced (no producer_factory); restart the process")
            return
        log.warning("outbox relay: replacing the producer (its sequence numbers are out of "
                    "step with the broker after a refused batch)")
        old, self.producer = self.producer, self.producer_factory()
        self.connected = False  # the next batch starts the new one
        try:
            await old.stop()
        except Exception as exc:  # noqa: BLE001 - the old producer is dropped either way
            log.warning("outbox relay: stopping the old producer failed: %s", exc)

    async def set_aside_count(self) -> int:
        """How many rows are set aside now (unpublished, out of attempts), by any relay."""
        async with self.engine.connect() as conn:
            return int((await conn.execute(
                _SET_ASIDE, {"max_attempts": self.max_attempts})).scalar_one())


def _encode(payload: Any) -> bytes:
    if isinstance(payload, str):  # already JSON (a row written by a group commit)
        return payload.encode()
    return json.dumps(payload, separators=(",", ":")).encode()


