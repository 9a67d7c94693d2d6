"""The cluster chaos run's stack (what `make up CLUSTER=1` runs, on ports and folders of its
own, Postgres shared) and its nine faults: each process replica, a Kafka broker, the deal's
Redis master and then its promoted successor."""

from __future__ import annotations

import os
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import httpx
from redis.asyncio import Redis

from devtools.chaos.faults import (
    PROCS_DOWN,
    PROCS_UP,
    ROOT,
    Fault,
    Stack,
    broker_ready,
    consumer_ready,
    run,
    sigkill,
)
from hotdeal_core.settings import PG_PORT
from hotdeal_core.stock.redis_store import RES, deal_keys

REDIS_SH = "scripts/cluster/redis.sh"
KAFKA_SH = "scripts/cluster/kafka.sh"
CLUSTER_INFRA_UP = ("scripts/infra.sh", "up")  # with HOTDEAL_CLUSTER=1: Postgres + both clusters
CLUSTER_INFRA_DOWN = ("scripts/infra.sh", "down")  # the two clusters; Postgres stays
KAFKA_NODE = 2  # the broker killed (any one: 3 replicas, min.insync.replicas=2)


@dataclass(frozen=True)
class ClusterStack(Stack):
    """Addresses of the cluster run: ports below the ephemeral range (faults.Stack)."""

    infra_dir: Path = ROOT / ".infra-chaos-cluster"
    run_dir: Path = ROOT / ".run-chaos-cluster"
    pg_port: int = int(os.environ.get("HOTDEAL_PG_PORT", PG_PORT))
    redis_port: int = 26201  # the first of nine nodes; bus ports 10000 below
    kafka_port: int = 29192  # three brokers, then their three controllers
    api_port: int = 28200  # HAProxy; the two APIs on the next two ports
    database: str = "hotdeal_chaos_cluster"

    @property
    def kafka_ports(self) -> list[int]:
        return [self.kafka_port + i for i in range(3)]

    @property
    def kafka(self) -> str:
        return ",".join(f"127.0.0.1:{p}" for p in self.kafka_ports)

    @property
    def redis_ports(self) -> list[int]:
        return [self.redis_port + i for i in range(9)]

    def env(self, **extra: str) -> dict[str, str]:
        return super().env(**{
            "HOTDEAL_CLUSTER": "1", "REDIS_CLUSTER": "true",
            "HOTDEAL_REDIS_CLUSTER_PORT": str(self.redis_port),
            "HOTDEAL_KAFKA_CLUSTER_PORTS": " ".join(map(str, self.kafka_ports)),
            "HOTDEAL_KAFKA_CLUSTER_CONTROLLER_PORTS": " ".join(
                str(p + 3) for p in self.kafka_ports),
            **extra})


async def _must(stack: Stack, *cmd: str) -> None:
    code, out = await run(stack, *cmd)
    if code != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {code}:\n{out[-3000:]}")


async def _fresh_database(stack: ClusterStack) -> None:
    """Drop and create the run's database (Postgres is shared: only this one is touched)."""
    url = stack.database_url.replace("+asyncpg", "").rsplit("/", 1)[0] + "/postgres"
    admin = await asyncpg.connect(url)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{stack.database}" WITH (FORCE)')
        await admin.execute(f'CREATE DATABASE "{stack.database}"')
    finally:
        await admin.close()


async def set_up(stack: ClusterStack) -> None:
    await _must(stack, *CLUSTER_INFRA_UP)
    await _fresh_database(stack)
    await _must(stack, sys.executable, "-m", "hotdeal_core.db.migrate")
    await _must(stack, *PROCS_UP, str(stack.run_dir), "--cluster")


async def tear_down(stack: ClusterStack) -> list[str]:
    """Stop the processes and both clusters; what failed, in words."""
    failed = []
    for cmd in ((*PROCS_DOWN, str(stack.run_dir)), CLUSTER_INFRA_DOWN):
        code, out = await run(stack, *cmd)
        if code != 0:
            failed.append(f"{' '.join(cmd)} exited {code}: {out[-500:]}")
    return failed


# ---------------------------------------------------------------- Redis Cluster
async def _ask(port: int, *cmd: str) -> str | None:
    client = Redis(port=port, socket_timeout=1, socket_connect_timeout=1, decode_responses=True)
    try:
        return str(await client.execute_command(*cmd))  # type: ignore[no-untyped-call]
    except Exception:  # noqa: BLE001 - any failure means "not answering"
        return None
    finally:
        await client.aclose()


def _owner(nodes: str, slot: int) -> tuple[int, bool] | None:
    """From CLUSTER NODES: the port of the master serving `slot`, and whether it is failed."""
    for line in nodes.splitlines():
        f = line.split()
        if len(f) < 9 or "master" not in f[2]:
            continue
        for r in f[8:]:
            lo, _, hi = r.partition("-")
            if lo.isdigit() and int(lo) <= slot <= int(hi or lo):
                return int(f[1].split("@")[0].rsplit(":", 1)[1]), "fail" in f[2]
    return None


async def deal_master(stack: ClusterStack, product_id: int) -> tuple[int, bool] | None:
    """The deal's master as the first live node sees it: (port, failed)."""
    key = deal_keys(product_id)[RES]
    for port in stack.redis_ports:
        slot = await _ask(port, "CLUSTER", "KEYSLOT", key)
        nodes = await _ask(port, "CLUSTER", "NODES") if slot is not None else None
        if nodes is not None and slot is not None:
            return _owner(nodes, int(slot))
    return None


class RedisMasterFault:
    """SIGKILL the deal's master; ready to restart once another node serves its slot."""

    def __init__(self, stack: ClusterStack, product_id: int) -> None:
        self.stack, self.product_id, self.killed = stack, product_id, 0

    async def aim(self, _: Stack) -> None:
        owner = await deal_master(self.stack, self.product_id)
        if owner is None or owner[1]:
            raise RuntimeError(f"the deal's Redis master is not known or not healthy: {owner}")
        self.killed = owner[0]

    async def kill(self, _: Stack) -> None:
        pid = self.stack.pid(self.stack.infra_dir / "redis-cluster" / str(self.killed)
                             / "redis.pid")
        await sigkill(pid, f"redis :{self.killed}")

    async def promoted(self, _: Stack) -> bool:
        owner = await deal_master(self.stack, self.product_id)
        return owner is not None and owner[0] != self.killed and not owner[1]

    async def answers(self, _: Stack) -> bool:
        return await _ask(self.killed, "PING") == "True"


# ---------------------------------------------------------------- probes
def api_replica_ready(port: int) -> Callable[[Stack], Awaitable[bool]]:
    async def probe(_: Stack) -> bool:
        try:
            async with httpx.AsyncClient(timeout=1.0) as client:
                return (await client.get(f"http://127.0.0.1:{port}/readyz")).status_code == 200
        except httpx.HTTPError:
            return False
    return probe


def broker_answers(port: int) -> Callable[[Stack], Awaitable[bool]]:
    async def probe(stack: Stack) -> bool:
        return await broker_ready(stack, port)
    return probe


def _proc_kill(name: str) -> Callable[[Stack], Awaitable[None]]:
    async def kill(stack: Stack) -> None:
        await sigkill(stack.pid(stack.run_dir / f"{name}.pid"), name)
    return kill


def cluster_faults(stack: ClusterStack, product_id: int) -> list[Fault]:
    procs_up = (*PROCS_UP, str(stack.run_dir), "--cluster")
    out = [Fault(f"order API {i}", f"api-{i}", "SIGKILL", procs_up,
                 _proc_kill(f"order-api-{i}"), api_replica_ready(stack.api_port + i))
           for i in (1, 2)]
    out += [Fault(f"{what} {i}", f"{name}-{i}", "SIGKILL", procs_up,
                  _proc_kill(f"{name}-{i}"), consumer_ready(stack, f"{name}-{i}"))
            for name, what in (("stock-worker", "stock worker"), ("reconciler", "reconciler"))
            for i in (1, 2)]
    broker = stack.kafka_ports[KAFKA_NODE - 1]
    out.append(Fault(f"Kafka broker {KAFKA_NODE}", "kafka", "SIGKILL", (KAFKA_SH, "up"),
                     _proc_kill_infra(f"kafka-cluster/node-{KAFKA_NODE}/kafka.pid"),
                     broker_answers(broker)))
    for component, name in (("redis-master", "Redis master of the deal"),
                            ("redis-promoted", "Redis master again (the promoted one)")):
        fault = RedisMasterFault(stack, product_id)
        out.append(Fault(name, component, "SIGKILL, restarted once a replica is promoted",
                         (REDIS_SH, "up"), fault.kill, fault.answers,
                         before_restart=fault.promoted, aim=fault.aim))
    return out


def _proc_kill_infra(rel: str) -> Callable[[Stack], Awaitable[None]]:
    async def kill(stack: Stack) -> None:
        await sigkill(stack.pid(stack.infra_dir / rel), rel)
    return kill

