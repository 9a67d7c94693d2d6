"""The outbox relay: publishes the outbox rows to Kafka and marks them published.

Claims, the lease heartbeat, set-aside rows and the ordering caveat: docs/events.md."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from aiokafka import AIOKafkaProducer
from sqlalchemy.ext.asyncio import AsyncEngine

from hotdeal_core.messaging import claims
from hotdeal_core.messaging.admin import ensure_topics
from hotdeal_core.messaging.claims import FailedRow
from hotdeal_core.messaging.outbox import LEASE_SECONDS, OutboxRow
from hotdeal_core.messaging.sending import NOT_TRIED, describe, is_transient, send_all
from hotdeal_core.observability.metrics import OUTBOX_PUBLISH_DELAY, OUTBOX_PUBLISHED

log = logging.getLogger(__name__)

# Rows handed over for direct publication beyond this wait for the polling relay instead.
MAX_DIRECT_ROWS = 100_000


# How long stopping waits for a Kafka client's start in progress (`OutboxRelay.connect`).
START_GRACE_SECONDS = 5.0


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
    # Created (or grown) before the first publish; see hotdeal_core.messaging.admin.
    topics: list[str] = field(default_factory=list)
    partitions: int = 6
    replication_factor: int = -1  # -1: the brokers' default.replication.factor
    retention_hours: float | None = None  # the topics' retention.ms (None: the brokers')
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
                                        self.replication_factor, self.retention_hours)
                    self._topics_ready = True
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001
                log.warning("outbox relay: Kafka unreachable (%s); retrying", exc)
                await asyncio.sleep(1.0)
                continue
            attempt = asyncio.ensure_future(self.producer.start())
            try:
                await asyncio.shield(attempt)
                self.connected = True
            except asyncio.CancelledError:
                # aiokafka leaks the connection it bootstraps through when it is cancelled
                # mid-start (stop() then has nothing to close): let the start end first.
                await asyncio.wait({attempt}, timeout=START_GRACE_SECONDS)
                if attempt.done() and not attempt.cancelled():
                    attempt.exception()  # seen: a failed start is not worth a warning now
                attempt.cancel()
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
            return await claims.renew(conn, ids, me=self.relay_id, lease=self.lease_seconds)

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
            claimed = await claims.claim(conn, limit=self.batch_size,
                                         max_attempts=self.max_attempts, me=self.relay_id,
                                         lease=self.lease_seconds)
        return await self.publish_rows(claimed)

    async def publish_rows(self, rows: Sequence[OutboxRow]) -> int:
        """Send rows this process holds a claim on; returns how many were published."""
        if not rows:
            return 0
        if not self.connected:
            await self.connect()
        rows = sorted(rows, key=lambda r: r.id)
        heartbeat = asyncio.create_task(self._heartbeat([r.id for r in rows]))
        try:
            outcome, broken = await send_all(self.producer, rows)
        finally:
            heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await heartbeat
        published = await self._record(rows, outcome)
        if broken:
            await self._replace_producer()
        return published

    async def _record(self, rows: Sequence[OutboxRow], outcome: dict[int, object]) -> int:
        published = [r.id for r in rows if outcome[r.id] is None]
        not_tried = [r.id for r in rows if outcome[r.id] is NOT_TRIED]
        transient: list[int] = []
        failed: list[tuple[int, str]] = []
        for r in rows:
            error = outcome[r.id]
            if isinstance(error, BaseException):
                if is_transient(error):
                    transient.append(r.id)
                else:
                    failed.append((r.id, describe(error)))
        if transient:
            first = outcome[transient[0]]
            assert isinstance(first, BaseException)
            log.warning("outbox relay: %d rows not sent (%s); retrying", len(transient),
                        describe(first))
        counted: list[FailedRow] = []
        delays: list[float] = []
        async with self.engine.begin() as conn:
            if published:
                delays = await claims.mark_published(conn, published)
            if failed:
                counted = await claims.count_failures(conn, failed, base=self.retry_backoff_base,
                                                      cap=claims.MAX_BACKOFF_SECONDS)
            if transient:
                await claims.retry_after(conn, transient, claims.TRANSIENT_RETRY_SECONDS)
            if not_tried:
                await claims.retry_after(conn, not_tried, 0.0)
        for delay in delays:
            OUTBOX_PUBLISH_DELAY.observe(delay)
        self.published_total += len(published)
        OUTBOX_PUBLISHED.inc(len(published))
        for row in counted:
            self._report_failure(row)
        return len(published)

    def _report_failure(self, row: FailedRow) -> None:
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
            return await claims.count_set_aside(conn, self.max_attempts)

