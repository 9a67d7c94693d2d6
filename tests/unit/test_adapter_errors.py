"""Each adapter turns its dependency's outages into `DependencyUnavailable` raised from the
original error, and leaves every other error as it was: the Redis stock store, the database
engine, the Kafka sender. Without services: a closed local port stands for a dependency
that is down."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any
from uuid import uuid4

import pytest
from aiokafka.errors import (
    KafkaConnectionError,
    KafkaTimeoutError,
    MessageSizeTooLargeError,
    NotLeaderForPartitionError,
    OutOfOrderSequenceNumber,
)
from redis._parsers import BaseParser
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

from hotdeal_core.db.engine import _translate
from hotdeal_core.errors import DependencyUnavailable, is_retriable
from hotdeal_core.messaging.outbox import OutboxRow
from hotdeal_core.messaging.sending import is_transient, send_all
from hotdeal_core.stock.port import ReserveRequest
from hotdeal_core.stock.redis_store import RedisStockStore
from tests.closed_ports import engine_on_a_closed_port, store_on_a_closed_port


def _unavailable(exc: BaseException, dependency: str) -> DependencyUnavailable:
    assert isinstance(exc, DependencyUnavailable), repr(exc)
    assert exc.code == f"{dependency}_unavailable" and is_retriable(exc)
    assert exc.__cause__ is not None  # what the adapter met, for the logs
    return exc


# Redis: the stock store ---------------------------------------------------------------

STORE_CALLS = {
    "key_used": lambda s: s.key_used(7, "u-1", "k-1"),
    "peek": lambda s: s.peek(7),
    "reserve": lambda s: s.reserve(7, uuid4(), "u-1", 1, None),
    "release_many": lambda s: s.release_many([(7, uuid4())]),
    "open": lambda s: s.open(7, 1, 10, 1, 1, 100),
}


@pytest.mark.parametrize("call", STORE_CALLS.values(), ids=STORE_CALLS.keys())
async def test_a_store_call_on_an_unreachable_redis_raises_redis_unavailable(call: Any
                                                                            ) -> None:
    store, redis = store_on_a_closed_port()
    try:
        with pytest.raises(DependencyUnavailable) as raised:
            await call(store)
    finally:
        await redis.aclose(close_connection_pool=True)
    assert isinstance(_unavailable(raised.value, "redis").__cause__, RedisConnectionError)


async def test_a_batch_of_reservations_on_an_unreachable_redis_gets_redis_unavailable(
        ) -> None:
    store, redis = store_on_a_closed_port()
    error: BaseException
    try:  # raised for the whole call, or returned as the deal's outcome
        (outcome,) = await store.reserve_groups(
            [(7, [ReserveRequest(uuid4(), "u-1", 1, None)])])
        assert isinstance(outcome, BaseException)
        error = outcome
    except DependencyUnavailable as exc:
        error = exc
    finally:
        await redis.aclose(close_connection_pool=True)
    _unavailable(error, "redis")


class _Replying:
    """A Redis client whose every command gets the error reply `reply`."""

    def __init__(self, reply: str) -> None:
        self.reply = reply

    def register_script(self, source: str) -> object:
        return object()

    async def hexists(self, *_: object) -> bool:
        raise BaseParser.parse_error(self.reply)


# Exactly as redis-py builds them from the server's reply (some become subclasses).
@pytest.mark.parametrize("reply", [
    "BUSY Redis is busy running a script. You can only call SCRIPT KILL or SHUTDOWN NOSAVE.",
    "OOM command not allowed when used memory > 'maxmemory'.",
    "READONLY You can't write against a read only replica.",
    "LOADING Redis is loading the dataset in memory",
    "MASTERDOWN Link with MASTER is down and replica-serve-stale-data is set to 'no'.",
    "CLUSTERDOWN The cluster is down",
    "TRYAGAIN Multiple keys request during rehashing of slot",
])
async def test_a_redis_that_refuses_for_a_while_is_redis_unavailable(reply: str) -> None:
    store = RedisStockStore(_Replying(reply))  # type: ignore[arg-type]
    with pytest.raises(DependencyUnavailable) as raised:
        await store.key_used(7, "u-1", "k-1")
    _unavailable(raised.value, "redis")


@pytest.mark.parametrize("reply", [
    "WRONGTYPE Operation against a key holding the wrong kind of value",
    "ERR user_script:1: Script attempted to access nonexistent global variable 'x'",
    "NOSCRIPT No matching script. Please use EVAL.",
])
async def test_any_other_redis_error_reply_stays_what_it_is(reply: str) -> None:
    store = RedisStockStore(_Replying(reply))  # type: ignore[arg-type]
    with pytest.raises(ResponseError) as raised:
        await store.key_used(7, "u-1", "k-1")
    assert not is_retriable(raised.value)


# Postgres: the engine -----------------------------------------------------------------

async def test_an_engine_on_an_unreachable_postgres_raises_postgres_unavailable() -> None:
    engine = engine_on_a_closed_port()
    try:
        with pytest.raises(DependencyUnavailable) as raised:
            async with engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
    finally:
        await engine.dispose()
    assert isinstance(_unavailable(raised.value, "postgres").__cause__, OSError)


class _DriverError(Exception):
    """What a Postgres driver's error carries: the SQLSTATE."""

    def __init__(self, sqlstate: str) -> None:
        super().__init__(f"sqlstate {sqlstate}")
        self.sqlstate = sqlstate


def _context(error: DBAPIError, *, disconnect: bool = False) -> Any:
    """What SQLAlchemy hands a handle_error listener (the fields `_translate` reads)."""
    return SimpleNamespace(sqlalchemy_exception=error, original_exception=error.orig,
                           is_disconnect=disconnect, is_pre_ping=False)


@pytest.mark.parametrize("sqlstate", [
    "57P03",  # cannot_connect_now: the database system is starting up
    "57P01",  # admin_shutdown
    "57P02",  # crash_shutdown
    "53300",  # too_many_connections
    "08006",  # connection_failure
    "08001",  # sqlclient_unable_to_establish_sqlconnection
])
def test_a_postgres_that_cannot_serve_now_is_postgres_unavailable(sqlstate: str) -> None:
    replaced = _translate(_context(DBAPIError("SELECT 1", None, _DriverError(sqlstate))))
    assert isinstance(replaced, DependencyUnavailable) and replaced.code == "postgres_unavailable"


@pytest.mark.parametrize(("error", "disconnect"), [
    (OperationalError("SELECT 1", None, _DriverError("")), False),
    (InterfaceError("SELECT 1", None, _DriverError("")), False),
    (DBAPIError("SELECT 1", None, _DriverError("")), True),  # the dialect saw a disconnect
    (DBAPIError("SELECT 1", None, _DriverError(""), connection_invalidated=True), False),
], ids=["operational", "interface", "disconnect", "invalidated"])
def test_a_lost_connection_is_postgres_unavailable(error: DBAPIError, disconnect: bool
                                                   ) -> None:
    assert isinstance(_translate(_context(error, disconnect=disconnect)),
                      DependencyUnavailable)


@pytest.mark.parametrize("sqlstate", ["23505", "42P01", "22003", "40001", "40P01", ""])
def test_any_other_database_error_is_left_as_it_is(sqlstate: str) -> None:
    assert _translate(_context(DBAPIError("SELECT 1", None, _DriverError(sqlstate)))) is None


# Kafka: the sender --------------------------------------------------------------------

class _Producer:
    """An AIOKafkaProducer whose send of the row with key K raises or fails as `errors[K]`
    says: ("raise", exc) from send() itself, ("fail", exc) in its delivery future."""

    def __init__(self, errors: dict[str, tuple[str, Exception]]) -> None:
        self.errors = errors

    async def send(self, topic: str, value: bytes, key: bytes,
                   headers: Any = None) -> asyncio.Future[Any]:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        if key.decode() not in self.errors:
            future.set_result(None)
            return future
        how, exc = self.errors[key.decode()]
        if how == "raise":
            raise exc
        future.set_exception(exc)
        return future


def _row(n: int, key: str) -> OutboxRow:
    return OutboxRow(n, "t", key, {"n": n}, datetime.now(UTC))


@pytest.mark.parametrize(("how", "error"), [
    ("raise", KafkaTimeoutError()),
    ("fail", KafkaConnectionError("Unable to bootstrap from 127.0.0.1:1")),
    ("fail", NotLeaderForPartitionError()),  # retriable: a leader election
    ("fail", ConnectionResetError(104, "Connection reset by peer")),
], ids=["send-timeout", "unreachable", "leader-election", "socket"])
async def test_a_kafka_outage_is_kafka_unavailable_and_not_counted_against_the_row(
        how: str, error: Exception) -> None:
    outcome, broken = await send_all(_Producer({"down": (how, error)}),
                                     [_row(1, "down"), _row(2, "fine")])
    down = outcome[1]
    assert isinstance(down, BaseException)
    assert _unavailable(down, "kafka").__cause__ is error
    assert is_transient(down) and outcome[2] is None
    assert not broken


@pytest.mark.parametrize(("error", "broken"), [
    (MessageSizeTooLargeError(), True),  # the broker refused the row: producer out of step
    (OutOfOrderSequenceNumber(), True),  # the producer's own state, not Kafka down
], ids=["refused-row", "producer-state"])
async def test_any_other_kafka_error_is_left_as_it_is(error: Exception, broken: bool) -> None:
    outcome, was_broken = await send_all(_Producer({"bad": ("fail", error)}), [_row(1, "bad")])
    assert outcome[1] is error and not is_retriable(error)
    assert was_broken is broken
