"""Outside Cluster mode, a reservation on a Redis primary that has a replica (a managed
primary/replica, Sentinel) is answered only once the replica holds it, and one the replica
does not acknowledge is given back (503); a primary without replicas is never waited on.
A throwaway primary and replica of the test's own (redis-server, no persistence)."""

from __future__ import annotations

import asyncio
import os
import random
import shutil
import signal
import socket
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from redis.asyncio import Redis

from hotdeal_core.settings import Settings
from hotdeal_core.stock.client import ReplicaAckTimeout, replica_acks
from hotdeal_core.stock.port import ReserveOutcome
from hotdeal_core.stock.redis_store import RES, RedisStockStore, deal_keys
from tests.random_refs import random_user
from tests.waiting import eventually

pytestmark = pytest.mark.skipif(shutil.which("redis-server") is None,
                                reason="needs redis-server")


@dataclass
class Node:
    port: int
    proc: asyncio.subprocess.Process
    client: Redis


def _free_port() -> int:
    """A port below the kernel's ephemeral range, free now (the caller retries if taken)."""
    while True:
        port = random.randrange(20000, 32000)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port


async def _start(workdir: Path, *extra: str) -> Node:
    """A redis-server answering PING; another port if the first one was taken meanwhile."""
    for _ in range(5):
        port = _free_port()
        proc = await asyncio.create_subprocess_exec(
            "redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
            "--appendonly", "no", "--dir", str(workdir), "--dbfilename", f"{port}.rdb", *extra,
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
        client = Redis(host="127.0.0.1", port=port, socket_timeout=5)

        async def up(proc: asyncio.subprocess.Process = proc, client: Redis = client) -> bool:
            if proc.returncode is not None:
                return True  # exited: the port was taken
            try:
                return bool(await client.ping())
            except Exception:  # noqa: BLE001 - not listening yet
                return False

        await eventually(up, timeout=15, what=f"redis-server on port {port}")
        if proc.returncode is None:
            return Node(port, proc, client)
        await client.aclose()
    raise AssertionError("no free port for a redis-server")


async def _stop(node: Node) -> None:
    await node.client.aclose()
    node.proc.send_signal(signal.SIGCONT)  # in case a test left it stopped
    node.proc.terminate()
    try:
        await asyncio.wait_for(node.proc.wait(), timeout=10)
    except TimeoutError:
        node.proc.kill()
        await node.proc.wait()


@pytest.fixture
async def primary(tmp_path: Path) -> AsyncIterator[Node]:
    # A replica's sync starts at once (diskless, otherwise 5 s after it asked).
    node = await _start(tmp_path, "--repl-diskless-sync-delay", "0")
    yield node
    await _stop(node)


@pytest.fixture
async def replica(tmp_path: Path, primary: Node) -> AsyncIterator[Node]:
    node = await _start(tmp_path, "--replicaof", "127.0.0.1", str(primary.port))
    try:
        await _in_sync(primary)
        yield node
    finally:
        await _stop(node)


async def _in_sync(primary: Node) -> None:
    """Until the replica acknowledges a write: one just online may answer no GETACK for up
    to a second (until its periodic REPLCONF ACK), measured here."""
    async def acks() -> bool:
        info = await primary.client.info("replication")
        if info.get("connected_slaves") != 1 or info["slave0"]["state"] != "online":
            return False
        await primary.client.set("probe", 1)
        return int(await primary.client.execute_command("WAIT", 1, 50)) == 1
    await eventually(acks, timeout=30, what="the replica acknowledging writes")


@pytest.fixture
def settings_unset(monkeypatch: pytest.MonkeyPatch) -> Iterator[Settings]:
    """Outside Cluster mode, REDIS_REPLICA_ACK_TIMEOUT_MS unset (the default)."""
    monkeypatch.delenv("REDIS_REPLICA_ACK_TIMEOUT_MS", raising=False)
    yield Settings(_env_file=None, redis_cluster=False)


async def _waits(node: Node) -> int:
    stats = await node.client.info("commandstats")
    return int(stats.get("cmdstat_wait", {}).get("calls", 0))


async def _opened(store: RedisStockStore, stock: int) -> int:
    pid = random.randint(10**9, 2 * 10**9)
    assert await store.open(pid, random.randint(1, 10**9), stock, 1, epoch=1, unit_price=500)
    return pid


async def test_a_reservation_on_a_primary_with_a_replica_waits_for_its_ack_outside_cluster(
        primary: Node, replica: Node, settings_unset: Settings) -> None:
    store = RedisStockStore(primary.client, replica_acks(settings_unset))
    pid = await _opened(store, 5)
    held, before = uuid.uuid4(), await _waits(primary)  # the fixture's probes
    reserved = await store.reserve(pid, held, random_user(), 1, None)
    assert reserved.outcome is ReserveOutcome.RESERVED
    assert await _waits(primary) > before  # one per attempt (a NOSCRIPT retry sends it again)
    assert await replica.client.hexists(deal_keys(pid)[RES], str(held))  # acked: it is there

    os.kill(replica.proc.pid, signal.SIGSTOP)  # connected, but acknowledges nothing
    try:
        with pytest.raises(ReplicaAckTimeout):
            await store.reserve(pid, uuid.uuid4(), random_user(), 1, None)
    finally:
        os.kill(replica.proc.pid, signal.SIGCONT)
    snap = await store.snapshot(pid)
    assert snap.stock == 4 and [r.order_id for r in snap.reservations] == [held]  # given back


async def test_a_primary_without_replicas_is_never_waited_on(
        primary: Node, settings_unset: Settings) -> None:
    store = RedisStockStore(primary.client, replica_acks(settings_unset))
    pid = await _opened(store, 5)
    for _ in range(3):
        reserved = await store.reserve(pid, uuid.uuid4(), random_user(), 1, None)
        assert reserved.outcome is ReserveOutcome.RESERVED
    assert await _waits(primary) == 0


async def test_a_replica_attached_later_is_waited_on_from_the_next_period(
        primary: Node, settings_unset: Settings, tmp_path: Path) -> None:
    store = RedisStockStore(primary.client, replica_acks(settings_unset))
    pid = await _opened(store, 1000)
    assert (await store.reserve(pid, uuid.uuid4(), random_user(), 1, None)).outcome \
        is ReserveOutcome.RESERVED
    assert await _waits(primary) == 0
    late = await _start(tmp_path, "--replicaof", "127.0.0.1", str(primary.port))
    try:
        await _in_sync(primary)
        before = await _waits(primary)  # the probe's

        async def waited() -> bool:
            await store.reserve(pid, uuid.uuid4(), random_user(), 1, None)
            return await _waits(primary) > before

        await eventually(waited, timeout=10, what="a reservation waiting for the replica")
    finally:
        await _stop(late)
