"""One sample of everything the soak watches: RSS, tables, outbox, consumer lag, latencies,
and this environment's Redis db (its own keys' MEMORY USAGE: the server may be shared, so
INFO's used_memory is only reported beside)."""

from __future__ import annotations

import math
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from redis.asyncio import Redis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from devtools.soak.load import Tally

TABLES = ("orders", "payments", "outbox", "processed_events")
_SIZES = text("SELECT c.relname, pg_table_size(c.oid), pg_indexes_size(c.oid), "
              "coalesce(s.n_live_tup, 0) FROM pg_class c "
              "LEFT JOIN pg_stat_user_tables s ON s.relid = c.oid "
              "WHERE c.relname = ANY(:t) AND c.relkind = 'r'")
_OUTBOX = text("SELECT count(*) FILTER (WHERE published_at IS NULL), count(*) FROM outbox")
#: Paid orders settled since: CONFIRMED (timed) or CANCELLED (paid after expiry: refunded).
_SETTLED = text("SELECT id::text, status, EXTRACT(EPOCH FROM updated_at) FROM orders "
                "WHERE id = ANY(CAST(:ids AS uuid[])) AND status <> 'PENDING'")
#: Redis keys beyond this many are not all sized: the rest count at the sized keys' mean.
MAX_SIZED_KEYS = 5000


def percentile(values: Sequence[float], pct: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(pct / 100 * len(ordered)) - 1))]


def _ms(seconds: Sequence[float], pct: float) -> float | None:
    value = percentile(seconds, pct)
    return None if value is None else round(value * 1000, 2)


def _tree(pid: int) -> list[int]:
    """A process and all its descendants (an API with workers)."""
    found, todo = [], [pid]
    while todo:
        p = todo.pop()
        found.append(p)
        try:
            for task in Path(f"/proc/{p}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except (OSError, ValueError):
            continue
    return found


def rss_bytes(pid: int) -> int:
    """Resident memory of a process and its descendants."""
    total = 0
    for p in _tree(pid):
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
        except (OSError, ValueError):
            continue
    return total


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process and its live descendants."""
    tick, total = os.sysconf("SC_CLK_TCK"), 0.0
    for p in _tree(pid):
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / tick  # utime, stime
    return total


class CpuMeter:
    """% of one core each process used since the previous reading, and the machine's load:
    on a shared machine a latency step with no step in the run's own CPU is someone else's."""

    def __init__(self, pids: Mapping[str, int]) -> None:
        self.pids = dict(pids)
        self.last = {n: cpu_seconds(p) for n, p in self.pids.items()}
        self.at = time.monotonic()
        self.span = 0.0  # seconds the last reading covers

    def read(self) -> dict[str, float]:
        now = time.monotonic()
        span, out = max(now - self.at, 1e-3), {}
        self.span = span
        for name, pid in self.pids.items():
            used = cpu_seconds(pid)
            out[f"cpu_pct.{name}"] = round(100 * (used - self.last[name]) / span, 1)
            self.last[name] = used
        self.at = now
        out["loadavg_1m"] = float(Path("/proc/loadavg").read_text().split()[0])
        return out


async def redis_db_bytes(redis: Redis) -> tuple[int, int, int]:
    """(keys, bytes of this db's keys, server used_memory)."""
    keys, sized, total = 0, 0, 0
    async for key in redis.scan_iter(count=1000):
        keys += 1
        if sized < MAX_SIZED_KEYS:
            total += int(await redis.memory_usage(key) or 0)
            sized += 1
    if keys > sized > 0:
        total = total * keys // sized
    used = int((await redis.info("memory"))["used_memory"])
    return keys, total, used


class LagReader:
    """Committed vs end offsets of the consumer groups (a plain consumer and admin client)."""

    def __init__(self, bootstrap: str, groups: Sequence[str]) -> None:
        self.groups = list(groups)
        self.admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        self.consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None,
                                         enable_auto_commit=False)

    async def start(self) -> None:
        await self.admin.start()
        await self.consumer.start()

    async def close(self) -> None:
        await self.consumer.stop()
        await self.admin.close()

    async def lags(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for group in self.groups:
            committed = await self.admin.list_consumer_group_offsets(group)
            tps = [TopicPartition(tp.topic, tp.partition) for tp in committed]
            ends = await self.consumer.end_offsets(tps) if tps else {}
            out[group] = sum(max(0, ends[tp] - max(0, committed[tp].offset)) for tp in tps)
        return out


async def sample(t0: float, cpu: CpuMeter, engine: AsyncEngine, redis: Redis, lag: LagReader,
                 tally: Tally) -> dict[str, Any]:
    """One row: flat keys (series name -> value; None when its read failed)."""
    row: dict[str, Any] = {"t": round(time.monotonic() - t0, 2)}
    for name, pid in cpu.pids.items():
        if name != "soak":  # the generator's memory is its ledger, not a service's
            row[f"rss_mb.{name}"] = rss_bytes(pid) / 2**20
    row.update(cpu.read())
    lat = tally.drain_latencies()
    row["orders_per_s"] = len(lat)  # divided by the interval by the caller
    # CPU ms per order (its payment included) per service: contention barely moves it.
    for name in (n for n in cpu.pids if n != "soak"):
        row[f"cpu_ms_per_order.{name}"] = None if not lat else round(
            row[f"cpu_pct.{name}"] * 10 * cpu.span / len(lat), 3)
    row["order_p50_ms"], row["order_p99_ms"] = _ms(lat, 50), _ms(lat, 99)
    async with engine.connect() as conn:
        for name, table, index, live in (await conn.execute(_SIZES, {"t": list(TABLES)})).all():
            row[f"pg_mb.{name}"] = (int(table) + int(index)) / 2**20
            row[f"pg_index_mb.{name}"] = int(index) / 2**20
            row[f"pg_rows.{name}"] = int(live)
        unpublished, outbox_rows = (await conn.execute(_OUTBOX)).one()
        row["outbox_unpublished"], row["outbox_rows"] = int(unpublished), int(outbox_rows)
        waiting = tally.waiting_paid()
        settled = (await conn.execute(_SETTLED, {"ids": waiting})).all() if waiting else []
    sent = tally.take_paid([i for i, _, _ in settled])
    delays = [float(at) - sent[i] for i, status, at in settled
              if i in sent and status == "CONFIRMED"]
    row["confirm_p50_ms"], row["confirm_p99_ms"] = _ms(delays, 50), _ms(delays, 99)
    row["paid_waiting"] = len(tally.waiting_paid())
    for group, n in (await lag.lags()).items():
        row[f"lag.{group}"] = n
    keys, db_bytes, used = await redis_db_bytes(redis)
    row["redis_keys"], row["redis_db_mb"], row["redis_server_mb"] = keys, db_bytes / 2**20, \
        used / 2**20
    return row
