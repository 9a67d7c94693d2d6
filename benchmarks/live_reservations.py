"""What a deal's live reservations cost the reads that run while it sells.

    .venv/bin/python -m benchmarks.live_reservations [--sizes 1000 100000] [--reps 30]

For each size N it opens a hot deal holding N live reservations, all of PENDING orders
(N rows in Postgres) reserved more than the orphan grace period ago, the steady state of a
long deal, and measures side by side in one run:

- `GET /products/{id}`'s use case (`products.get_product`): now one `peek` script (status
  and stock), before: the `snapshot` script (the whole reservation hash, N records parsed);
- the orphan sweep (`orphans.release_orphans`, once a second in the reconciler): now the
  reservations due (a sorted set by time; a PENDING order's reservation is due again only
  after its expiry), before: the snapshot plus one status query for every old reservation
  (the sweep as it was, reading what it reads when nothing is an orphan);
- the first pass of the new sweep over the N old reservations (it looks at each once and
  reschedules it), per reservation;
- the audit (`audit.audit_deal`, behind `/metrics`), still a full read (it must compare
  every reservation with its order), for reference.

Everything runs in a database of its own (`hotdeal_bench`, created, migrated and dropped)
and Redis db 2. Figures are means over `--reps` calls (ms), one client, nothing else
running. Overrides: HOTDEAL_BENCH_PG_DSN (an admin DSN, default
the local Postgres's postgres database), HOTDEAL_BENCH_REDIS_URL.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

import asyncpg
from redis.asyncio import Redis
from sqlalchemy import text

from hotdeal_core.db import migrate
from hotdeal_core.db.engine import make_engine
from hotdeal_core.settings import Settings, local_database_url, local_redis_url
from hotdeal_core.stock.port import RebuiltState, Reservation
from hotdeal_core.stock.redis_store import RedisStockStore
from hotdeal_core.usecases.audit import audit_deal
from hotdeal_core.usecases.context import Context
from hotdeal_core.usecases.deals import StartDeal, start_deal
from hotdeal_core.usecases.orphans import release_orphans
from hotdeal_core.usecases.products import create_product, get_product

ADMIN_DSN = os.environ.get("HOTDEAL_BENCH_PG_DSN",
                           local_database_url("postgres", "postgresql"))
REDIS_URL = os.environ.get("HOTDEAL_BENCH_REDIS_URL", local_redis_url(2))
DB = "hotdeal_bench"
GRACE = 30.0


class SnapshotAsPeek(RedisStockStore):
    """The stock store as `GET /products/{id}` used it before: a full snapshot per call."""

    async def peek(self, product_id: int) -> Any:
        return await self.snapshot(product_id)


async def legacy_sweep_read(ctx: Context, product_id: int) -> int:
    """The old sweep's reads for one deal: every reservation, then the status of each old one."""
    snap = await ctx.stock.snapshot(product_id)
    cutoff = int((time.time() - GRACE) * 1000)
    old = [r.order_id for r in snap.reservations if r.reserved_at_ms < cutoff]
    async with ctx.engine.connect() as conn:
        rows = (await conn.execute(text("SELECT id, status FROM orders WHERE id = ANY(:ids)"),
                                   {"ids": old})).all()
    return len(rows)


async def mean_ms(call: Callable[[], Awaitable[object]], reps: int) -> float:
    await call()  # warm-up
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        await call()
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.fmean(times)


async def deal_with_reservations(ctx: Context, n: int) -> tuple[int, int]:
    pid = (await create_product(ctx, f"bench {n}", 1000, n + 10)).id
    deal = await start_deal(ctx, StartDeal(pid, n + 10, 1))
    ids, users = [uuid.uuid4() for _ in range(n)], [f"b{i}" for i in range(n)]
    async with ctx.engine.begin() as conn:
        await conn.execute(text(
            "INSERT INTO orders (id, product_id, hot_deal_id, user_id, quantity, unit_price, "
            "status, expires_at) SELECT i, :pid, :deal, u, 1, 1000, 'PENDING', "
            "now() + interval '10 minutes' FROM unnest(CAST(:ids AS uuid[]), "
            "CAST(:users AS text[])) AS t(i, u)"),
            {"pid": pid, "deal": deal.deal_id, "ids": ids, "users": users})
    old_ms = int((time.time() - 2 * GRACE) * 1000)
    await ctx.stock.rebuild(pid, RebuiltState(
        deal.deal_id, 10, 1, 2, 1000, dict.fromkeys(users, 1),
        [Reservation(i, u, 1, old_ms, "") for i, u in zip(ids, users, strict=True)], {}))
    return pid, deal.deal_id


async def measure(ctx: Context, n: int, reps: int) -> dict[str, float]:
    pid, deal_id = await deal_with_reservations(ctx, n)
    before = replace(ctx, stock=SnapshotAsPeek(ctx.stock._redis))  # type: ignore[attr-defined]
    row = {"product_before": await mean_ms(lambda: get_product(before, pid), reps),
           "product_now": await mean_ms(lambda: get_product(ctx, pid), reps),
           "sweep_before": await mean_ms(lambda: legacy_sweep_read(ctx, pid), max(3, reps // 5))}
    t0, examined = time.perf_counter(), 0
    while True:  # the first pass: each old reservation looked at once, then rescheduled
        sweep = await release_orphans(ctx, GRACE)
        examined += sweep.examined
        if not sweep.more:
            break
    row["first_pass_us_per_reservation"] = (time.perf_counter() - t0) * 1e6 / max(examined, 1)
    row["sweep_now"] = await mean_ms(lambda: release_orphans(ctx, GRACE), reps)
    row["audit"] = await mean_ms(lambda: audit_deal(ctx, deal_id, attempts=1), max(3, reps // 5))
    await ctx.stock.drop(pid, deal_id)
    return row


async def run(sizes: list[int], reps: int) -> None:
    admin = await asyncpg.connect(ADMIN_DSN)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{DB}" WITH (FORCE)')
        await admin.execute(f'CREATE DATABASE "{DB}"')
    finally:
        await admin.close()
    url = "postgresql+asyncpg" + ADMIN_DSN.removeprefix("postgresql").rsplit("/", 1)[0] + f"/{DB}"
    await asyncio.to_thread(migrate.upgrade, url)
    settings = Settings(_env_file=None, database_url=url, redis_url=REDIS_URL,
                        allow_dev_secrets=True)
    engine, redis = make_engine(settings, pool_size=4), Redis.from_url(REDIS_URL)
    ctx = Context(engine=engine, stock=RedisStockStore(redis), settings=settings)
    try:
        rows = {n: await measure(ctx, n, reps) for n in sizes}
    finally:
        await engine.dispose()
        await redis.aclose()
        admin = await asyncpg.connect(ADMIN_DSN)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{DB}" WITH (FORCE)')
        finally:
            await admin.close()
    print(f"machine: {platform.node()} {os.cpu_count()} cpus, Python {platform.python_version()}")
    print(f"{'live reservations':>18} | {'GET /products before':>20} | {'now':>8} | "
          f"{'sweep before':>12} | {'now':>8} | {'first pass':>10} | {'audit':>9}")
    for n, r in rows.items():
        print(f"{n:>18,} | {r['product_before']:>17.2f} ms | {r['product_now']:>5.2f} ms | "
              f"{r['sweep_before']:>9.1f} ms | {r['sweep_now']:>5.2f} ms | "
              f"{r['first_pass_us_per_reservation']:>5.1f} us/r | {r['audit']:>6.1f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 100_000])
    parser.add_argument("--reps", type=int, default=30)
    args = parser.parse_args()
    asyncio.run(run(args.sizes, args.reps))


if __name__ == "__main__":
    main()
