"""Reservation-step micro-benchmark: the Redis Lua reserve vs the old Postgres hot-row UPDATE.

    .venv/bin/python -m benchmarks.reservation [--ops 5000] [--json out.json]

It measures ONLY the stock step, both backends side by side in one run, at concurrency 1
and 100 (N asyncio tasks share one counter until --ops operations are done), each after a
warm-up that is not recorded:

- redis: `RedisStockStore.reserve(...)` (the `reserve.lua` script, one EVALSHA round trip)
  on a deal opened on a random product id >= 900_000_000 in Redis db 2, so no app data is
  touched; the stock never runs out, and every op is a new order id and a new user. The
  deal's keys are dropped at the end.
- postgres: the old design's hot-row decrement, one transaction per op on one row:
  BEGIN; UPDATE bench_hot_row SET stock = stock - 1 WHERE id = 1 AND stock >= 1
  RETURNING stock; COMMIT (the row lock is held until the commit, so the commit is part of
  the step). asyncpg directly, a pool sized to the concurrency; the table lives in the
  `hotdeal` database and is dropped at the end.

Each op's latency is time.perf_counter() around the client call: it includes the client's
connection-pool checkout and the asyncio scheduling overhead, equally on both sides. At
concurrency 100 in one Python process that client-side figure is mostly the client's own
event-loop queueing (100 callers share one core-bound loop), not the store.

Server side (Redis only): `INFO commandstats` (`cmdstat_evalsha`: calls, usec) is read just
before and just after each measured Redis pass (after its warm-up); usec delta / calls delta
is the mean time Redis spent executing the reserve script per call, on the server, without
network, client or queueing time. It is a mean (Redis gives no per-command percentile delta),
and it counts every EVALSHA on the server during the pass, so it is exact only when nothing
else calls scripts meanwhile (`server_calls` shows how many calls it covered).

Overrides: HOTDEAL_BENCH_REDIS_URL (default: the local Redis's db 2) and
HOTDEAL_BENCH_PG_DSN (default: the local Postgres's hotdeal database).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import math
import os
import platform
import random
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import asyncpg
from redis.asyncio import Redis

from benchmarks.results import Recorder
from devtools.tables import markdown_table
from hotdeal_core.settings import local_database_url, local_redis_url
from hotdeal_core.stock.port import ReserveOutcome, ReserveRequest
from hotdeal_core.stock.redis_store import RedisStockStore
from hotdeal_core.stock.reserver import ReserveItem, reservation_batcher

REDIS_URL = os.environ.get("HOTDEAL_BENCH_REDIS_URL", local_redis_url(2))
PG_DSN = os.environ.get("HOTDEAL_BENCH_PG_DSN",
                        local_database_url("hotdeal", "postgresql"))
CONCURRENCIES = (1, 100)
HUGE_STOCK = 10**15
TABLE = "bench_hot_row"
DECREMENT = f"UPDATE {TABLE} SET stock = stock - 1 WHERE id = 1 AND stock >= 1 RETURNING stock"

Op = Callable[[int], Awaitable[None]]


@dataclass(frozen=True)
class Result:
    backend: str
    concurrency: int
    ops: int
    seconds: float
    ops_per_s: float
    p50_ms: float
    p99_ms: float
    server_usec_per_call: float | None = None  # Redis: mean EVALSHA execution, server side
    server_calls: int | None = None  # EVALSHA calls counted by that mean


def percentile(sorted_values: list[float], pct: float) -> float:
    """Nearest-rank percentile of an ascending list."""
    if not sorted_values:
        raise ValueError("no samples")
    rank = max(1, math.ceil(len(sorted_values) * pct / 100))
    return sorted_values[min(rank, len(sorted_values)) - 1]


async def drive(op: Op, ops: int, concurrency: int) -> tuple[float, list[float]]:
    """Run `ops` calls of `op` from `concurrency` tasks; (wall seconds, latencies in s)."""
    counter = iter(range(ops))
    latencies: list[float] = []

    async def worker() -> None:
        for i in counter:  # a shared iterator: each index is taken exactly once
            start = time.perf_counter()
            await op(i)
            latencies.append(time.perf_counter() - start)

    began = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.perf_counter() - began, latencies


async def measure(backend: str, op: Op, ops: int, concurrency: int, warmup: int) -> Result:
    await drive(op, warmup, concurrency)
    seconds, latencies = await drive(op, ops, concurrency)
    latencies.sort()
    return Result(backend, concurrency, ops, round(seconds, 4), round(ops / seconds, 1),
                  round(percentile(latencies, 50) * 1000, 3),
                  round(percentile(latencies, 99) * 1000, 3))


async def evalsha_stats(redis: Redis) -> tuple[int, int]:
    """(calls, usec) of EVALSHA since the server's start, from INFO commandstats."""
    stat = (await redis.info("commandstats")).get("cmdstat_evalsha") or {}
    return int(stat.get("calls", 0)), int(stat.get("usec", 0))


async def bench_redis(ops: int, warmup: int) -> tuple[list[Result], str]:
    redis = Redis.from_url(REDIS_URL, max_connections=max(CONCURRENCIES) + 10)
    store = RedisStockStore(redis)
    product_id = 900_000_000 + random.randrange(99_000_000)
    deal_id = random.randrange(1, 2**31)
    tag = uuid.uuid4().hex[:8]
    users = itertools.count()  # every op, warm-up included, is a new user
    try:
        version = str((await redis.info("server"))["redis_version"])
        if not await store.open(product_id, deal_id, HUGE_STOCK, 1_000_000, epoch=1,
                                unit_price=100):
            raise RuntimeError(f"could not open a bench deal on product {product_id}")

        async def reserve(_: int) -> None:
            result = await store.reserve(product_id, uuid.uuid4(), f"bench-{tag}-{next(users)}",
                                         1, None)
            if result.outcome is not ReserveOutcome.RESERVED:
                raise RuntimeError(f"reserve returned {result.outcome.name}")

        batcher = reservation_batcher(store, max_batch=1000)

        async def reserve_batched(_: int) -> None:
            result = await batcher.submit(ReserveItem(product_id, ReserveRequest(
                uuid.uuid4(), f"bench-{tag}-{next(users)}", 1)))
            if result.outcome is not ReserveOutcome.RESERVED:
                raise RuntimeError(f"reserve returned {result.outcome.name}")

        results = []
        batcher.start()
        try:  # the same stock step, through the natural-batching reserver (one script call
            for concurrency in CONCURRENCIES:  # carries every buyer queued meanwhile)
                await drive(reserve_batched, warmup, concurrency)
                result = await measure("redis-batched", reserve_batched, ops, concurrency, 0)
                results.append(replace(result, server_calls=batcher.stats.batches))
        finally:
            await batcher.stop()
        for concurrency in CONCURRENCIES:
            await drive(reserve, warmup, concurrency)
            calls0, usec0 = await evalsha_stats(redis)
            result = await measure("redis", reserve, ops, concurrency, 0)
            calls1, usec1 = await evalsha_stats(redis)
            calls = calls1 - calls0
            results.append(replace(result, server_calls=calls, server_usec_per_call=round(
                (usec1 - usec0) / calls, 2) if calls > 0 else None))
        return results, version
    finally:
        await store.drop(product_id, deal_id)
        await redis.aclose()


async def bench_postgres(ops: int, warmup: int) -> tuple[list[Result], str]:
    admin = await asyncpg.connect(PG_DSN)
    try:
        version = str(await admin.fetchval("SHOW server_version"))
        await admin.execute(f"CREATE TABLE IF NOT EXISTS {TABLE} "
                            "(id int PRIMARY KEY, stock bigint NOT NULL CHECK (stock >= 0))")
        await admin.execute(f"INSERT INTO {TABLE} (id, stock) VALUES (1, $1) "
                            "ON CONFLICT (id) DO UPDATE SET stock = EXCLUDED.stock", HUGE_STOCK)
        results = []
        for concurrency in CONCURRENCIES:
            pool = await asyncpg.create_pool(PG_DSN, min_size=concurrency,
                                             max_size=concurrency)
            try:
                async def decrement(_: int, pool: Any = pool) -> None:
                    async with pool.acquire() as conn, conn.transaction():
                        if await conn.fetchval(DECREMENT) is None:
                            raise RuntimeError("bench_hot_row ran out of stock")

                results.append(await measure("postgres", decrement, ops, concurrency, warmup))
            finally:
                await pool.close()
        return results, version
    finally:
        try:
            await admin.execute(f"DROP TABLE IF EXISTS {TABLE}")
        finally:
            await admin.close()


def render(results: list[Result], machine: dict[str, Any]) -> str:
    lines = [f"machine: {machine['cpu_count']} CPUs, {machine['platform']}, "
             f"Python {machine['python']}, Redis {machine['redis_version']}, "
             f"PostgreSQL {machine['postgres_version']}", "",
             *markdown_table(
                 ["backend", "concurrency", "ops", "ops/s", "client p50 ms", "client p99 ms",
                  "server mean us/call (calls)"],
                 [[r.backend, r.concurrency, r.ops, f"{r.ops_per_s:,.1f}", f"{r.p50_ms:.3f}",
                   f"{r.p99_ms:.3f}", "-" if r.server_usec_per_call is None else
                   f"{r.server_usec_per_call:.2f} ({r.server_calls:,})"] for r in results],
                 "lrrrrrr")]
    lines += ["", "client p50/p99: perf_counter around the client call (pool checkout and event-"
              "loop queueing included); server mean: Redis INFO commandstats cmdstat_evalsha "
              "usec/calls delta over the pass (script execution only, no network/queueing)", ""]
    for c, ratio in ratios(results).items():
        lines.append(f"concurrency {c}: Redis/Postgres ops/s = {ratio['ops_per_s']:.2f}x, "
                     f"Postgres/Redis p99 = {ratio['p99']:.2f}x")
    return "\n".join(lines)


def ratios(results: list[Result]) -> dict[int, dict[str, float]]:
    by = {(r.backend, r.concurrency): r for r in results}
    out = {}
    for c in CONCURRENCIES:
        redis, pg = by[("redis", c)], by[("postgres", c)]
        out[c] = {"ops_per_s": round(redis.ops_per_s / pg.ops_per_s, 2),
                  "p99": round(pg.p99_ms / redis.p99_ms, 2)}
    return out


async def run(ops: int, warmup: int) -> tuple[list[Result], dict[str, Any]]:
    redis_results, redis_version = await bench_redis(ops, warmup)
    pg_results, pg_version = await bench_postgres(ops, warmup)
    machine = {"cpu_count": os.cpu_count(), "platform": platform.platform(),
               "python": platform.python_version(), "redis_version": redis_version,
               "postgres_version": pg_version}
    return [*redis_results, *pg_results], machine


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.reservation",
                                     description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--ops", type=int, default=5000, help="measured ops per pass")
    parser.add_argument("--warmup", type=int, default=200, help="unrecorded ops per pass")
    parser.add_argument("--json", type=Path, default=None,
                        help="also write the result file here (benchmarks/results.py)")
    args = parser.parse_args(argv)
    if args.ops < 1 or args.warmup < 0:
        parser.error("--ops must be >= 1 and --warmup >= 0")
    recorder = Recorder()
    results, machine = asyncio.run(run(args.ops, args.warmup))
    print(render(results, machine))
    if args.json is not None:
        recorder.write(args.json, {"versions": machine, "ops": args.ops, "warmup": args.warmup,
                                   "results": [asdict(r) for r in results],
                                   "ratios": {str(c): v for c, v in ratios(results).items()}})
    return 0


if __name__ == "__main__":
    sys.exit(main())
