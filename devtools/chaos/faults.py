"""The chaos run's own stack and the faults it injects.

The run owns its services: a Postgres, Redis and Kafka of its own (ports and data directory
apart from `make up`'s, started by the project's `scripts/infra.sh` with other ports) and the
three processes (`python -m devtools.procs up`, what `make up` runs, with another run
directory), because it kills them. Each fault kills one component the hard way and restarts it
with the same project command an operator would use; probes say when it answers again.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import signal
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import httpx
from redis.asyncio import Redis

from devtools.procs import LOAD_API_ENV, consumer_port, read_pid, running
from hotdeal_core.settings import local_database_url

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Stack:
    """Addresses of the chaos run's services and processes."""

    infra_dir: Path = ROOT / ".infra-chaos"
    run_dir: Path = ROOT / ".run-chaos"
    # Apart from `make up`'s (scripts/lib/ports.sh), below the ephemeral range as they are.
    pg_port: int = 25442
    redis_port: int = 26389
    kafka_port: int = 29102  # and its controller on the next port
    api_port: int = 28100
    database: str = "hotdeal_chaos"

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    @property
    def database_url(self) -> str:
        return local_database_url(self.database, port=self.pg_port)

    @property
    def kafka(self) -> str:
        return f"127.0.0.1:{self.kafka_port}"

    def env(self, **extra: str) -> dict[str, str]:
        """The environment of every command and process of the run."""
        return {**os.environ, **LOAD_API_ENV,
                "HOTDEAL_INFRA_DIR": str(self.infra_dir), "HOTDEAL_PG_PORT": str(self.pg_port),
                "HOTDEAL_REDIS_PORT": str(self.redis_port),
                "HOTDEAL_KAFKA_PORT": str(self.kafka_port),
                "HOTDEAL_KAFKA_CONTROLLER_PORT": str(self.kafka_port + 1),
                "HOTDEAL_PG_DATABASES": self.database, "DATABASE_URL": self.database_url,
                "REDIS_URL": f"redis://127.0.0.1:{self.redis_port}/0",
                "KAFKA_BOOTSTRAP_SERVERS": self.kafka, "KAFKA_TOPIC_PREFIX": "chaos.",
                "ORDER_API_PORT": str(self.api_port), "ALLOW_DEV_SECRETS": "true",
                "HOTDEAL_CLUSTER": "", "REDIS_CLUSTER": "false",  # one node of each
                "HOTDEAL_PYTHON": sys.executable,  # scripts/infra.sh's probes
                # Expiries, sweeps and duties fast enough to happen within the run.
                "RESERVATION_TTL_SECONDS": "8", "SWEEP_INTERVAL_SECONDS": "0.5",
                "RECONCILE_INTERVAL_SECONDS": "0.5", "ORPHAN_GRACE_SECONDS": "5",
                "OUTBOX_POLL_INTERVAL_MS": "20", **extra}

    def pid(self, path: Path) -> int | None:
        return read_pid(path)


async def run(stack: Stack, *cmd: str, timeout: float = 300.0) -> tuple[int, str]:
    """A project command in the run's environment; (exit code, its output)."""
    proc = await asyncio.create_subprocess_exec(
        *cmd, cwd=ROOT, env=stack.env(), stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT)
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        proc.kill()
        out, _ = await proc.communicate()
        return -1, out.decode(errors="replace") + f"\n(timed out after {timeout:g} s)"
    return proc.returncode or 0, out.decode(errors="replace")


INFRA_UP = ("scripts/infra.sh", "up")
INFRA_DOWN = ("scripts/infra.sh", "down")
PROCS_UP = (sys.executable, "-m", "devtools.procs", "up", "--run-dir")
PROCS_DOWN = (sys.executable, "-m", "devtools.procs", "down", "--run-dir")


async def sigkill(pid: int | None, what: str) -> None:
    """SIGKILL and wait until the process is gone (a zombie counts as gone)."""
    if pid is None:
        raise RuntimeError(f"{what}: no pid file, is it running?")
    os.kill(pid, signal.SIGKILL)
    for _ in range(300):
        if not running(pid):
            return
        await asyncio.sleep(0.05)
    raise RuntimeError(f"{what} (pid {pid}) still alive 15 s after SIGKILL")


# ---------------------------------------------------------------- probes
async def api_ready(stack: Stack) -> bool:
    try:
        async with httpx.AsyncClient(timeout=1.0) as client:
            return (await client.get(f"{stack.api_url}/readyz")).status_code == 200
    except httpx.HTTPError:
        return False


def consumer_ready(stack: Stack, name: str) -> Callable[[Stack], Awaitable[bool]]:
    """The consumer's /readyz answers 200, on the METRICS_PORT `procs up` gives it (the
    killed process answers nothing; its restart answers once subscribed)."""
    url = f"http://127.0.0.1:{consumer_port(name, stack.api_port)}/readyz"

    async def probe(_: Stack) -> bool:
        try:
            async with httpx.AsyncClient(timeout=1.0) as client:
                return (await client.get(url)).status_code == 200
        except httpx.HTTPError:
            return False
    return probe


async def pg_answers(stack: Stack) -> bool:
    try:
        conn = await asyncpg.connect(stack.database_url.replace("+asyncpg", ""), timeout=1)
    except (OSError, asyncpg.PostgresError, TimeoutError):
        return False
    try:
        return bool(await conn.fetchval("SELECT 1") == 1)
    finally:
        await conn.close()


async def redis_answers(stack: Stack) -> bool:
    client = Redis(port=stack.redis_port, socket_timeout=1, socket_connect_timeout=1)
    try:
        return bool(await client.ping())
    except (OSError, Exception):  # noqa: BLE001 - any failure means "not answering"
        return False
    finally:
        await client.aclose()


async def accepts(port: int) -> bool:
    """Something accepts a connection on the local port (cheaper than a full probe)."""
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 1)
    except (OSError, TimeoutError):
        return False
    writer.close()
    return True


async def broker_ready(stack: Stack, port: int) -> bool:
    """The broker on `port` answers a metadata request (a Python start only once it accepts)."""
    if not await accepts(port):
        return False
    code, _ = await run(stack, sys.executable, "scripts/kafka_ready.py", f"127.0.0.1:{port}",
                        "--timeout", "1", timeout=10)
    return code == 0


async def kafka_answers(stack: Stack) -> bool:
    return await broker_ready(stack, stack.kafka_port)


# ---------------------------------------------------------------- faults
@dataclass(frozen=True)
class Fault:
    name: str
    component: str
    how: str  # the kill, in words
    restart: tuple[str, ...]  # the project command that brings it back
    kill: Callable[[Stack], Awaitable[None]]
    answers: Callable[[Stack], Awaitable[bool]]
    # Must pass before the restart (after the hold): a Redis master is restarted only once a
    # replica took its place, as an operator would (earlier, it would come back as master).
    before_restart: Callable[[Stack], Awaitable[bool]] | None = None
    # Finds what `kill` kills (the deal's Redis master) before the kill's clock starts: a
    # lookup under load takes a moment in which orders are still accepted.
    aim: Callable[[Stack], Awaitable[None]] | None = None


def _proc_kill(name: str) -> Callable[[Stack], Awaitable[None]]:
    async def kill(stack: Stack) -> None:
        await sigkill(stack.pid(stack.run_dir / f"{name}.pid"), name)
    return kill


def _infra_kill(rel: str, what: str) -> Callable[[Stack], Awaitable[None]]:
    async def kill(stack: Stack) -> None:
        await sigkill(stack.pid(stack.infra_dir / rel), what)
    return kill


def pg_data_dir(stack: Stack) -> Path:
    """Where scripts/infra.sh keeps the cluster: under the infra dir, or (a checkout the
    postgres user cannot reach) /var/lib/postgresql/hotdeal-<md5 of the infra dir>."""
    digest = hashlib.md5(str(stack.infra_dir).encode()).hexdigest()[:12]  # as infra.sh
    for data in (stack.infra_dir / "postgres" / "data",
                 Path(f"/var/lib/postgresql/hotdeal-{digest}/data")):
        if (data / "postmaster.pid").exists():
            return data
    raise RuntimeError("no running Postgres of the chaos run found")


async def _pg_crash(stack: Stack) -> None:
    """`pg_ctl stop -m immediate`: every backend quits at once, no checkpoint (a crash)."""
    data = pg_data_dir(stack)
    pg_ctl = os.environ.get("HOTDEAL_PG_BIN", "/usr/lib/postgresql/15/bin") + "/pg_ctl"
    cmd = [pg_ctl, "-D", str(data), "-m", "immediate", "-w", "stop"]
    if os.geteuid() == 0:
        cmd = ["runuser", "-u", "postgres", "--", *cmd]
    code, out = await run(stack, *cmd, timeout=60)
    if code != 0:
        raise RuntimeError(f"pg_ctl stop -m immediate failed: {out}")


def faults(stack: Stack) -> list[Fault]:
    procs_up = (*PROCS_UP, str(stack.run_dir))
    return [
        Fault("order API", "order-api", "SIGKILL", procs_up, _proc_kill("order-api"), api_ready),
        Fault("stock worker", "stock-worker", "SIGKILL", procs_up, _proc_kill("stock-worker"),
              consumer_ready(stack, "stock-worker")),
        Fault("reconciler", "reconciler", "SIGKILL", procs_up, _proc_kill("reconciler"),
              consumer_ready(stack, "reconciler")),
        Fault("Kafka", "kafka", "SIGKILL", INFRA_UP, _infra_kill("kafka/kafka.pid", "kafka"),
              kafka_answers),
        Fault("Postgres", "postgres", "crash (pg_ctl stop -m immediate)", INFRA_UP, _pg_crash,
              pg_answers),
        Fault("Redis", "redis", "SIGKILL (its state is lost)", INFRA_UP,
              _infra_kill("redis/redis.pid", "redis"), redis_answers),
    ]
