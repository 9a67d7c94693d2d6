"""The one Redis client factory (`make_redis`: a pool, or a `RedisCluster` with REDIS_CLUSTER),
and `evalsha_on_owners`: scripts then `WAIT` on one known connection per node, never retried
(why and when: docs/scaling.md, "No oversell across a failover: replica acks")."""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias

from redis.asyncio import BlockingConnectionPool, Redis, RedisCluster
from redis.asyncio.cluster import ClusterNode
from redis.asyncio.connection import AbstractConnection
from redis.commands.core import AsyncScript
from redis.exceptions import (
    AskError,
    ClusterDownError,
    NoScriptError,
    RedisClusterException,
    ResponseError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from hotdeal_core.errors import DependencyUnavailable
from hotdeal_core.settings import Settings
from hotdeal_core.stock.port import NotSent

log = logging.getLogger(__name__)

RedisClient: TypeAlias = Redis | RedisCluster
# Replies that mean "not here, not now": the script did not run (a failover, a resharding).
_MOVED = (AskError, TryAgainError, ClusterDownError)  # MovedError is an AskError
_ATTEMPTS = 3  # NOSCRIPT, SCRIPT LOAD, send again: never more than twice


class ReplicaAckTimeout(DependencyUnavailable):
    """No replica acknowledged a reservation in time; the reservation was given back."""

    def __init__(self, timeout_ms: int) -> None:
        super().__init__("redis", f"no Redis replica acknowledged the reservation within "
                                  f"{timeout_ms} ms; retry")


def make_redis(settings: Settings, *, max_connections: int | None = None) -> RedisClient:
    """The client of `REDIS_URL`: a cluster client when `REDIS_CLUSTER` is set."""
    size = max_connections or settings.redis_max_connections
    timeouts: dict[str, Any] = {"socket_timeout": 5, "socket_connect_timeout": 5}
    if settings.redis_cluster:
        return _WaitingCluster.from_url(settings.redis_url, waiting=size,
                                        max_connections=size + _OWN_CONNECTIONS, **timeouts)
    # A bounded pool where callers wait for a free connection: Redis runs one command at a
    # time anyway, and a burst of 1,000 requests must not open 1,000 sockets at once
    # (measured: connect timeouts -> 503s).
    return Redis(connection_pool=BlockingConnectionPool.from_url(
        settings.redis_url, max_connections=size, timeout=10, **timeouts))


# Connections per node beyond the callers' share: `evalsha_on_owners` takes its own (one
# per node per batch of reservations or settlements, the batches run one at a time).
_OWN_CONNECTIONS = 8


class _WaitingCluster(RedisCluster):
    """A node out of connections makes RedisCluster raise at once (it has no blocking
    pool); here a caller waits for one of `waiting` command slots instead, as callers of
    the single node's BlockingConnectionPool do (a burst must queue, not fail with 503s)."""

    def __init__(self, *args: Any, waiting: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._waiting = asyncio.Semaphore(waiting)

    async def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        async with self._waiting:
            return await super().execute_command(*args, **kwargs)


@dataclass(frozen=True, slots=True)
class ReplicaAcks:
    """When reservations wait for a replica (`WAIT 1 timeout_ms`): never (timeout 0),
    always, or (`if_replicated`) while the primary says it has one."""

    timeout_ms: int = 0
    if_replicated: bool = False


def replica_acks(settings: Settings) -> ReplicaAcks:
    """The WAIT timeout: REDIS_REPLICA_ACK_TIMEOUT_MS if set (0: never); else 100 ms in cluster
    mode, and on a single node whenever its primary has replicas."""
    if settings.redis_replica_ack_timeout_ms is not None:
        return ReplicaAcks(settings.redis_replica_ack_timeout_ms)
    return ReplicaAcks(100, if_replicated=not settings.redis_cluster)


# How long a primary's replica count (INFO replication) is trusted: a replica attached or
# promoted is waited on within this, for one INFO per process per period.
REPLICAS_ASKED_EVERY_S = 1.0


class ReplicaWatch:
    """The WAIT timeout for one client's reservations now: `acks.timeout_ms`, or 0 when
    `acks.if_replicated` and the primary's last answer was "no replica"."""

    def __init__(self, client: RedisClient, acks: ReplicaAcks,
                 every_s: float = REPLICAS_ASKED_EVERY_S) -> None:
        self.acks = acks
        self._client, self._every = client, every_s
        self._replicated: bool | None = None  # None: never answered
        self._asked_at = -math.inf
        self._asking = asyncio.Lock()

    async def wait_ms(self) -> int:
        if self.acks.timeout_ms <= 0 or not self.acks.if_replicated \
                or isinstance(self._client, RedisCluster):
            return self.acks.timeout_ms
        stale = time.monotonic() - self._asked_at >= self._every
        # One INFO at a time: while it runs, the others keep the last answer (if any).
        if stale and not (self._asking.locked() and self._replicated is not None):
            await self._ask()
        # Unknown (the primary never answered): wait, a 503 rather than a loss.
        return 0 if self._replicated is False else self.acks.timeout_ms

    async def _ask(self) -> None:
        async with self._asking:
            if time.monotonic() - self._asked_at < self._every:
                return  # answered while this caller queued
            try:
                info = await self._client.info("replication")
            except Exception as exc:  # noqa: BLE001 - the reservation itself will tell
                log.warning("Redis replica count not read (%s); kept: %s", exc,
                            self._replicated)
                return
            finally:  # a failed INFO too: asked again next period
                self._asked_at = time.monotonic()
            replicated = int(info.get("connected_slaves", 0)) > 0
            if replicated != self._replicated:
                log.info("Redis primary %s replicas: reservations %s", "has" if replicated
                         else "has no", "wait for a replica's ack" if replicated
                         else "are answered without waiting")
            self._replicated = replicated


async def close_redis(client: RedisClient) -> None:
    """Close the client and its connections (a pool passed to `Redis` is not closed by
    `aclose()` alone)."""
    if isinstance(client, Redis):
        await client.aclose(close_connection_pool=True)
    else:
        await client.aclose()


async def flush_all(client: RedisClient) -> None:
    """Empty the client's database: on a cluster, every master's (there is only db 0)."""
    if isinstance(client, RedisCluster):
        await client.flushdb(target_nodes=RedisCluster.PRIMARIES)
    else:
        await client.flushdb()


@dataclass(frozen=True, slots=True)
class OwnerReply:
    reply: Any  # the script's reply, or the exception it raised
    acked: bool  # a replica holds it (always True when no WAIT was asked for)


async def evalsha_on_owners(client: RedisClient, script: AsyncScript,
                            calls: Sequence[tuple[list[str], list[str | int]]],
                            timeout_ms: int) -> list[OwnerReply]:
    """Run `script` once per (keys, args), grouped by owning node, one connection per node, each
    node's calls followed by `WAIT 1 timeout_ms` if > 0. A call whose connection failed gets
    that error as its reply: whether it ran is unknown."""
    if isinstance(client, Redis):
        return await _on_pool(client, script, calls, timeout_ms)
    groups: dict[str, tuple[ClusterNode, list[int]]] = {}
    for i, (keys, _) in enumerate(calls):
        try:
            node = client.get_node_from_key(keys[0])
        except RedisClusterException as exc:  # no master owns the slot (mid-failover)
            _refresh_later(client)
            raise NotSent(f"Redis Cluster: {exc}") from exc
        if node is None:
            raise NotSent(f"no Redis node owns the slot of {keys[0]}")
        groups.setdefault(node.name, (node, []))[1].append(i)
    replies: list[OwnerReply] = [OwnerReply(None, False)] * len(calls)
    outcomes = await asyncio.gather(*(
        _on_node(client, node, script, [calls[i] for i in indexes], timeout_ms)
        for node, indexes in groups.values()), return_exceptions=True)
    for (_, indexes), outcome in zip(groups.values(), outcomes, strict=True):
        if isinstance(outcome, BaseException):
            if not isinstance(outcome, Exception):
                raise outcome  # a cancellation
            _refresh_later(client)
            outcome = [OwnerReply(outcome, False)] * len(indexes)
        for i, reply in zip(indexes, outcome, strict=True):
            replies[i] = reply
    return replies


async def _on_pool(client: Redis, script: AsyncScript,
                   calls: Sequence[tuple[list[str], list[str | int]]],
                   timeout_ms: int) -> list[OwnerReply]:
    pool = client.connection_pool
    conn = await pool.get_connection()  # type: ignore[no-untyped-call]
    try:
        return await _run(conn, script, calls, timeout_ms)
    except Exception as exc:  # noqa: BLE001 - the outcome of every call on it is unknown
        return [OwnerReply(exc, False)] * len(calls)
    finally:
        await pool.release(conn)


async def _on_node(client: RedisCluster, node: ClusterNode, script: AsyncScript,
                   calls: Sequence[tuple[list[str], list[str | int]]],
                   timeout_ms: int) -> list[OwnerReply]:
    conn = node.acquire_connection()
    try:
        await _connected(conn)
        replies = await _run(conn, script, calls, timeout_ms)
    finally:
        node.release(conn)
    if not any(isinstance(r.reply, _MOVED) for r in replies):
        return replies
    _refresh_later(client)  # the slot moved (a failover): the next call goes right
    return [OwnerReply(_moved(r.reply), False) if isinstance(r.reply, _MOVED) else r
            for r in replies]


def _moved(exc: BaseException) -> NotSent:
    moved = NotSent(str(exc))
    moved.__cause__ = exc
    return moved


async def _connected(conn: AbstractConnection) -> None:
    """Make `conn` a live connection before anything is sent on it, or raise `NotSent`: a
    pooled socket its node closed (a dead node) is dropped rather than written to, so a
    failure to reach a dead node is known not to have run anything."""
    if conn.is_connected:
        try:
            stale = await conn.can_read()  # unread bytes: not ours to read
        except (RedisConnectionError, OSError):
            stale = True  # the node closed it
        if stale:
            await conn.disconnect()
    if not conn.is_connected:
        try:
            await conn.connect()  # type: ignore[no-untyped-call]
        except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
            where = f"{getattr(conn, 'host', '?')}:{getattr(conn, 'port', '?')}"
            raise NotSent(f"{where} unreachable: {exc}") from exc


async def _run(conn: AbstractConnection, script: AsyncScript,
               calls: Sequence[tuple[list[str], list[str | int]]],
               timeout_ms: int) -> list[OwnerReply]:
    """The calls on one connection; the ones refused before running are sent again (after
    SCRIPT LOAD if the node did not know the script: a promoted replica never does)."""
    replies: list[Any] = [None] * len(calls)
    todo = list(range(len(calls)))
    acked = False
    for _ in range(_ATTEMPTS):
        load = any(isinstance(replies[i], NoScriptError) for i in todo)
        commands: list[tuple[Any, ...]] = [("SCRIPT", "LOAD", script.script)] if load else []
        commands += [("EVALSHA", script.sha, len(calls[i][0]), *calls[i][0], *calls[i][1])
                     for i in todo]
        if timeout_ms > 0:
            commands.append(("WAIT", 1, timeout_ms))
        answers = await _send(conn, commands)
        if load:
            answers.pop(0)
        acked = timeout_ms <= 0 or (not isinstance(answers[-1], BaseException)
                                    and int(answers[-1]) >= 1)
        for i, answer in zip(todo, answers, strict=False):
            replies[i] = answer
        todo = [i for i in todo if isinstance(replies[i], NoScriptError)]
        if not todo:
            break
    return [OwnerReply(r, acked and not isinstance(r, BaseException)) for r in replies]


async def _send(conn: AbstractConnection, commands: list[tuple[Any, ...]]) -> list[Any]:
    try:
        await conn.send_packed_command(conn.pack_commands(commands))
        answers: list[Any] = []
        for _ in commands:
            try:
                answers.append(await conn.read_response())
            except ResponseError as exc:  # an error reply: kept for its call
                answers.append(exc)
        return answers
    except BaseException:
        await conn.disconnect()  # replies may be left unread: never reuse this socket
        raise


_refreshing: set[asyncio.Task[None]] = set()


def _refresh_later(client: RedisClient) -> None:
    """Reload the slot map in the background (after a failover the cached owner is gone)."""
    if not isinstance(client, RedisCluster) or _refreshing:
        return  # one reload at a time: the waiting callers all ask again after it

    async def refresh() -> None:
        try:
            await client.nodes_manager.initialize()
        except Exception as exc:  # noqa: BLE001 - the next failure asks again
            log.warning("Redis Cluster slot map not reloaded: %s", exc)

    task = asyncio.get_running_loop().create_task(refresh())
    _refreshing.add(task)
    task.add_done_callback(_refreshing.discard)
