"""Micro-benchmark: a batched order write through SQLAlchemy Core vs the raw asyncpg
connection under it, same statement, same transaction shape.

    .venv/bin/python -m benchmarks.sql_core_vs_asyncpg [--batches 1,32,256] [--rows 20000]
        [--rounds 3] [--json out.json]

One batch = one transaction on a connection checked out of the SQLAlchemy pool (both sides):
BEGIN; SELECT pg_advisory_xact_lock_shared(k) (the deal fence); one statement that inserts
the batch's orders from arrays (`INSERT ... SELECT FROM unnest($1::uuid[], ...)`) and, in a
CTE, one outbox row per order, RETURNING the order rows; COMMIT.

- core: `await conn.execute(text(...), params)` then `.all()`, in `async with conn.begin()`.
- asyncpg: `driver = (await conn.get_raw_connection()).driver_connection`, then
  `async with driver.transaction()`, `driver.execute(...)`, `driver.fetch(...)`.

Both sides get the same pre-built arrays (uuids, ints, strings, datetimes, JSON text), so
only the call path differs. Sequential batches (concurrency 1), after a warm-up; the sides
alternate within each round and the median round is reported: wall ms per batch, rows/s,
and this process's CPU ms per batch (time.process_time: the client's own work, where the
two differ). The tables are copies of `orders` / `outbox` (`LIKE ... INCLUDING ALL`, the
outbox without its sequence default) in the app database, dropped at the end, so no relay
ever sees these rows. Override the database with HOTDEAL_BENCH_DATABASE_URL.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from devtools.tables import markdown_row, markdown_table
from hotdeal_core.settings import load_settings

SUFFIX = uuid.uuid4().hex[:8]
ORDERS, OUTBOX = f"bench_sql_orders_{SUFFIX}", f"bench_sql_outbox_{SUFFIX}"
FENCE_KEY = 900_000_001

NAMES = ["ids", "product_ids", "deal_ids", "user_ids", "quantities", "prices", "keys",
         "expires", "topic", "event_keys", "payloads"]
TYPES = ["uuid[]", "bigint[]", "bigint[]", "text[]", "int[]", "bigint[]", "text[]",
         "timestamptz[]", "text", "text[]", "jsonb[]"]
TEMPLATE = f"""
WITH placed AS (
    INSERT INTO {ORDERS} (id, product_id, hot_deal_id, user_id, quantity, unit_price, status,
                          idempotency_key, expires_at)
    SELECT t.id, t.product_id, t.hot_deal_id, t.user_id, t.quantity, t.unit_price, 'PENDING',
           t.idempotency_key, t.expires_at
    FROM unnest({{0}}, {{1}}, {{2}}, {{3}}, {{4}}, {{5}}, {{6}}, {{7}})
         AS t(id, product_id, hot_deal_id, user_id, quantity, unit_price, idempotency_key,
              expires_at)
    RETURNING *),
event AS (
    INSERT INTO {OUTBOX} (topic, key, event_type, payload)
    SELECT {{8}}, e.key, 'OrderPlaced', e.payload FROM unnest({{9}}, {{10}}) AS e(key, payload))
SELECT * FROM placed
"""
# The same statement: asyncpg's $n, and SQLAlchemy's named parameters (its asyncpg dialect
# turns them back into $n), with the same explicit types.
INSERT = TEMPLATE.format(*(f"${i}::{t}" for i, t in enumerate(TYPES, start=1)))
CORE_INSERT = text(TEMPLATE.format(*(f"CAST(:{n} AS {t})" for n, t in zip(NAMES, TYPES,
                                                                           strict=True))))
FENCE = text("SELECT pg_advisory_xact_lock_shared(:k)")


def arrays(n: int) -> list[Any]:
    """One batch's parameters, in statement order."""
    ids = [uuid.uuid4() for _ in range(n)]
    expires = datetime.now(UTC) + timedelta(minutes=10)
    payloads = [json.dumps({"type": "OrderPlaced", "order_id": str(i), "product_id": 1,
                            "hot_deal_id": 1, "user_id": f"u-{i.hex[:12]}", "quantity": 1,
                            "unit_price": 1000, "expires_at": expires.isoformat()})
                for i in ids]
    return [ids, [1] * n, [1] * n, [f"u-{i.hex[:12]}" for i in ids], [1] * n, [1000] * n,
            [None] * n, [expires] * n, "bench.orders.v1", [str(i) for i in ids], payloads]


async def core_batch(conn: AsyncConnection, params: list[Any]) -> int:
    async with conn.begin():
        await conn.execute(FENCE, {"k": FENCE_KEY})
        rows = (await conn.execute(CORE_INSERT, dict(zip(NAMES, params, strict=True)))).all()
    return len(rows)


async def asyncpg_batch(conn: AsyncConnection, params: list[Any]) -> int:
    driver = (await conn.get_raw_connection()).driver_connection
    assert driver is not None
    async with driver.transaction():
        await driver.execute("SELECT pg_advisory_xact_lock_shared($1)", FENCE_KEY)
        rows = await driver.fetch(INSERT, *params)
    return len(rows)


SIDES = {"core": core_batch, "asyncpg": asyncpg_batch}


async def one_pass(engine: AsyncEngine, side: str, size: int, batches: int) -> dict[str, float]:
    work = [arrays(size) for _ in range(batches)]  # built before the clocks start
    t0, c0, rows = time.perf_counter(), time.process_time(), 0
    for params in work:
        async with engine.connect() as conn:
            rows += await SIDES[side](conn, params)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    assert rows == size * batches
    return {"ms_per_batch": 1000 * wall / batches, "rows_per_s": rows / wall,
            "client_cpu_ms_per_batch": 1000 * cpu / batches}


async def run(a: argparse.Namespace) -> dict[str, Any]:
    url = os.environ.get("HOTDEAL_BENCH_DATABASE_URL", load_settings().database_url)
    engine = create_async_engine(url, pool_size=2)
    async with engine.begin() as conn:
        await conn.execute(text(f"CREATE TABLE {ORDERS} (LIKE orders INCLUDING ALL)"))
        await conn.execute(text(f"CREATE TABLE {OUTBOX} (LIKE outbox INCLUDING ALL "
                                "EXCLUDING DEFAULTS)"))
        await conn.execute(text(f"ALTER TABLE {OUTBOX} ALTER id ADD GENERATED BY DEFAULT AS "
                                "IDENTITY, ALTER created_at SET DEFAULT now(), "
                                "ALTER attempts SET DEFAULT 0"))
    results: dict[str, Any] = {}
    try:
        for size in a.batches:
            batches = max(5, a.rows // size)
            for side in SIDES:  # warm-up: the pool, the prepared statements
                await one_pass(engine, side, size, max(3, batches // 10))
            rounds: dict[str, list[dict[str, float]]] = {side: [] for side in SIDES}
            for r in range(a.rounds):
                for side in (SIDES if r % 2 == 0 else reversed(list(SIDES))):
                    rounds[side].append(await one_pass(engine, side, size, batches))
            results[str(size)] = {side: {"batches": batches, "rounds": passes, **{
                k: statistics.median(p[k] for p in passes) for k in passes[0]}}
                for side, passes in rounds.items()}
            show(size, results[str(size)])
    finally:
        async with engine.begin() as conn:
            await conn.execute(text(f"DROP TABLE IF EXISTS {ORDERS}, {OUTBOX}"))
        await engine.dispose()
    return results


def show(size: int, r: dict[str, Any]) -> None:
    core, raw = r["core"], r["asyncpg"]
    print(markdown_row([
        size, core["batches"], f"{core['ms_per_batch']:.3f}", f"{raw['ms_per_batch']:.3f}",
        f"{core['rows_per_s']:,.0f}", f"{raw['rows_per_s']:,.0f}",
        f"x{raw['rows_per_s'] / core['rows_per_s']:.2f}",
        f"{core['client_cpu_ms_per_batch']:.3f}", f"{raw['client_cpu_ms_per_batch']:.3f}"]),
        flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batches", default="1,32,256", help="rows per batch, comma-separated")
    p.add_argument("--rows", type=int, default=20_000, help="rows per pass (per batch size)")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--json", type=Path)
    a = p.parse_args()
    a.batches = [int(x) for x in a.batches.split(",")]
    print("\n".join(markdown_table(  # the header; each row printed as it is measured
        ["rows/batch", "batches/pass", "core ms/batch", "asyncpg ms/batch", "core rows/s",
         "asyncpg rows/s", "asyncpg/core", "core client CPU ms/batch",
         "asyncpg client CPU ms/batch"], [], "r" * 9)))
    results = asyncio.run(run(a))
    if a.json:
        a.json.write_text(json.dumps({"args": {**vars(a)}, "results": results}, indent=2,
                                     default=str) + "\n")


if __name__ == "__main__":
    main()
