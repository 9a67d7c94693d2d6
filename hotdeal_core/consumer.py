"""What every Kafka subscriber shares: parse strictly, dead-letter what cannot be parsed,
retry a failing handler a bounded number of times, back off before a dependency outage is
redelivered.

Subscribers use `AckPolicy.NACK_ON_ERROR`: the offset is committed only after the handler
returns; an exception seeks back so the message is delivered again (at-least-once). What
`handle` does with a failure depends on what failed:

- a message that cannot be parsed never will be: it goes to the dead-letter topic with the
  reason, and only then is its offset committed, so it is neither lost nor blocking;
- a dependency outage (Postgres, Redis or Kafka unreachable, see `is_dependency_outage`)
  says nothing about the message: `handle` backs off and raises, the message is redelivered
  until the dependency is back. It is never dead-lettered because a database is down;
- any other exception may be a bug or a message the code cannot apply: the handler is tried
  again in-process, `RetryPolicy.max_attempts` times in all (HANDLER_MAX_ATTEMPTS) with a
  short exponential backoff, then the message is dead-lettered with the reason and the
  offset committed, so one message cannot block its partition forever.

Retrying is safe because every handler is idempotent (processed_events by event_id, and the
order status compare-and-set).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from aiokafka.errors import KafkaError, KafkaTimeoutError
from faststream.kafka import KafkaBroker
from faststream.kafka.message import KafkaMessage
from pydantic import TypeAdapter, ValidationError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError as RedisResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from hotdeal_core.db.engine import is_unavailable
from hotdeal_core.errors import HotdealError
from hotdeal_core.settings import Settings
from hotdeal_core.topics import Topics
from schemas.events import DeadLetter

log = logging.getLogger(__name__)
E = TypeVar("E")

# Error replies of a Redis that cannot serve for a while (as order_api.errors sees them).
_REDIS_BUSY_CODES = frozenset(
    {"BUSY", "OOM", "READONLY", "LOADING", "MASTERDOWN", "CLUSTERDOWN", "TRYAGAIN"})


@dataclass(frozen=True)
class RetryPolicy:
    """How `handle` retries. The defaults are production's; tests pass zero backoffs."""

    max_attempts: int = 5            # in all, the first one included (HANDLER_MAX_ATTEMPTS)
    backoff_base: float = 0.1        # before the 2nd attempt; doubled each time...
    backoff_cap: float = 2.0         # ...up to this
    outage_backoff: float = 1.0      # before raising for redelivery on a dependency outage

    @classmethod
    def from_settings(cls, settings: Settings) -> RetryPolicy:
        return cls(max_attempts=settings.handler_max_attempts)

    def backoff(self, attempt: int) -> float:
        """The pause after failed attempt number `attempt` (1-based)."""
        return float(min(self.backoff_cap, self.backoff_base * 2 ** (attempt - 1)))


def _redis_busy(exc: RedisResponseError) -> bool:
    # redis-py strips the codes it knows into `status_code`; the others head the message.
    code = getattr(exc, "status_code", None) or str(exc).split(" ", 1)[0]
    return code in _REDIS_BUSY_CODES


def is_dependency_outage(exc: BaseException) -> bool:
    """True if `exc` says a dependency (Postgres, Redis, Kafka) is unreachable, refusing
    connections or unable to serve for now, as opposed to something wrong with the message
    or the code. Follows the `raise ... from` chain, so a wrapped outage is still one."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, HotdealError) and current.retriable:  # DependencyUnavailable
            return True
        # OSError covers ConnectionError and the builtin TimeoutError (asyncio's too).
        if isinstance(current, OSError | RedisConnectionError | RedisTimeoutError):
            return True
        if isinstance(current, RedisResponseError) and _redis_busy(current):
            return True
        if isinstance(current, KafkaError) and (
                current.retriable or isinstance(current, KafkaTimeoutError)):
            return True
        if is_unavailable(current):  # Postgres: pool timeout, connection lost, SQLSTATE
            return True
        current = current.__cause__
    return False


def _reason(exc: BaseException, attempts: int) -> str:
    return f"handler failed after {attempts} attempts: {type(exc).__name__}: {exc}"


async def dead_letter(broker: KafkaBroker, topics: Topics, msg: KafkaMessage, consumer: str,
                      reason: str) -> None:
    raw = msg.raw_message
    record: Any = raw[0] if isinstance(raw, tuple) else raw
    key = record.key.decode(errors="replace") if record.key else None
    letter = DeadLetter(source_topic=record.topic, partition=record.partition,
                        offset=record.offset, key=key, reason=reason[:2000],
                        raw=msg.body.decode(errors="replace")[:100_000], consumer=consumer)
    await broker.publish(letter.model_dump(mode="json"), topic=topics.dead_letter,
                         key=key.encode() if key else None)
    log.error("dead-lettered %s[%s]@%s: %s", record.topic, record.partition, record.offset,
              reason[:200])


async def handle(broker: KafkaBroker, topics: Topics, msg: KafkaMessage, consumer: str,
                 adapter: TypeAdapter[E], apply: Callable[[E], Awaitable[None]], *,
                 retry: RetryPolicy = RetryPolicy()) -> None:
    """Parse `msg` and apply it; see the module docstring for what happens on failure.
    Returns normally when the offset may be committed, raises when the message must come
    again."""
    try:
        event = adapter.validate_json(msg.body)
    except ValidationError as exc:
        await dead_letter(broker, topics, msg, consumer, f"unparseable event: {exc}")
        return
    attempt = 0
    while True:
        attempt += 1
        try:
            await apply(event)
            return
        except Exception as exc:
            if is_dependency_outage(exc):
                log.exception("%s: a dependency is unavailable; the message will be "
                              "redelivered", consumer)
                await asyncio.sleep(retry.outage_backoff)
                raise
            if attempt >= retry.max_attempts:
                log.exception("%s: handler failed %d times; dead-lettering the message",
                              consumer, attempt)
                # If this publish fails (Kafka down), it raises: the message is redelivered
                # and tried again from the first attempt, never dropped.
                await dead_letter(broker, topics, msg, consumer, _reason(exc, attempt))
                return
            log.warning("%s: handler failed (attempt %d of %d): %s: %s; retrying", consumer,
                        attempt, retry.max_attempts, type(exc).__name__, exc)
        await asyncio.sleep(retry.backoff(attempt))
