"""Settlement benchmark: payments settled per second by the real stock worker process.

    .venv/bin/python -m benchmarks.settlement [--orders 10000] [--rate 0] [--workers 1]
        [--json out.json]

What it does, in its own database and topic namespace (nothing of the demo or the tests is
touched):

1. creates the database `hotdeal_bench` if it is missing and migrates it; picks a fresh
   topic prefix `bench.<random>.` (its topics are created now and deleted at the end);
2. creates a product and starts a Redis deal of `--orders` + `--warmup` units (the use
   cases), reserves one unit per order in Redis (Redis db 3) and inserts the orders as
   PENDING with `paid_at` set (as the webhook leaves them), with direct SQL;
3. starts `python -m stock_worker` (devtools.procs, as the e2e tier does; `--workers N`:
   N of them, one consumer group) and waits until they are ready and all in the group,
   then settles `--warmup` payments first (the consumer group's first join and assignment
   take seconds; they are not what is measured);
4. publishes one PaymentSucceeded per order on the payments topic (aiokafka, key = order
   id, acks=all, idempotent: what the order API's relay does), as fast as possible or at
   `--rate` events/s, and polls Postgres until every order is CONFIRMED.

Reported: orders/s = orders / (last confirmation - first publish), wall clock; the workers'
CPU seconds over that span (psutil, all of them together); p50/p95/max of
(orders.updated_at - the event's occurred_at). `updated_at` is `now()` of the settling
transaction, i.e. its start, so the latency leaves out the commit itself. With `--rate 0`
every event is in Kafka almost at once: the latency is then mostly queueing behind the
backlog, and the throughput is the worker's drain rate; `--rate` below that rate shows the
latency of a worker that keeps up.

Everything runs on the same cores (Postgres, Kafka, Redis, the worker, this publisher).
Overrides: HOTDEAL_BENCH_PG (default: the local Postgres, postgresql://.../ without a
database), HOTDEAL_BENCH_DB (hotdeal_bench), HOTDEAL_BENCH_REDIS_URL (the local Redis's db 3),
KAFKA_BOOTSTRAP_SERVERS (the local Kafka).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import sys
import tempfile
import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

import asyncpg
import psutil
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from redis.asyncio import Redis
from sqlalchemy import text

from benchmarks.results import Recorder
from devtools.procs import Proc
from hotdeal_core.db.engine import make_engine
from hotdeal_core.db.migrate import upgrade
from hotdeal_core.messaging.admin import ensure_topics
from hotdeal_core.messaging.topics import Topics
from hotdeal_core.settings import KAFKA_PORT, Settings, local_database_url, local_redis_url
from hotdeal_core.stock.redis_store import RedisStockStore
from hotdeal_core.usecases.context import Context
from hotdeal_core.usecases.deals import StartDeal, start_deal
from hotdeal_core.usecases.products import create_product
from schemas.events import PaymentSucceeded

PG = os.environ.get("HOTDEAL_BENCH_PG", local_database_url("", "postgresql").rstrip("/"))
DB = os.environ.get("HOTDEAL_BENCH_DB", "hotdeal_bench")
REDIS_URL = os.environ.get("HOTDEAL_BENCH_REDIS_URL", local_redis_url(3))
KAFKA = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", f"127.0.0.1:{KAFKA_PORT}")
PRICE = 1000

_INSERT_ORDERS = text("""
    INSERT INTO orders (id, product_id, hot_deal_id, user_id, quantity, unit_price, status,
                        expires_at, paid_at)
    SELECT o.id, :pid, :deal, o.usr, 1, :price, 'PENDING', now() + interval '1 hour', now()
    FROM unnest(CAST(:ids AS uuid[]), CAST(:users AS text[])) AS o(id, usr)
""")


async def _ensure_database() -> str:
    conn = await asyncpg.connect(f"{PG}/postgres")
    try:
        if not await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", DB):
            await conn.execute(f'CREATE DATABASE "{DB}"')
    finally:
        await conn.close()
    url = f"{PG.replace('postgresql://', 'postgresql+asyncpg://')}/{DB}"
    await asyncio.to_thread(upgrade, url)
    return url


async def _setup(ctx: Context, store: RedisStockStore, n: int) -> tuple[int, int, list[uuid.UUID]]:
    """A deal of n units, n reservations in Redis, n PENDING (paid) orders in Postgres."""
    pid = (await create_product(ctx, f"bench-{uuid.uuid4().hex[:8]}", PRICE, n)).id
    deal_id = (await start_deal(ctx, StartDeal(pid, n, 1))).deal_id
    ids = [uuid.uuid4() for _ in range(n)]
    users = [f"bench-{i}-{pid}" for i in range(n)]
    for start in range(0, n, 100):
        await asyncio.gather(*(store.reserve(pid, ids[i], users[i], 1, None)
                               for i in range(start, min(n, start + 100))))
    async with ctx.engine.begin() as conn:
        await conn.execute(_INSERT_ORDERS, {"pid": pid, "deal": deal_id, "price": PRICE,
                                            "ids": ids, "users": users})
    return pid, deal_id, ids


async def _publish(producer: AIOKafkaProducer, topic: str, ids: list[uuid.UUID],
                   rate: float) -> dict[uuid.UUID, datetime]:
    """One PaymentSucceeded per order; returns each event's occurred_at."""
    sent: dict[uuid.UUID, datetime] = {}
    futures = []
    started = time.monotonic()
    for i, order_id in enumerate(ids):
        if rate > 0:
            ahead = started + i / rate - time.monotonic()
            if ahead > 0:
                await asyncio.sleep(ahead)
        event = PaymentSucceeded(order_id=order_id, payment_id=f"bench-{order_id}",
                                 amount=PRICE)
        sent[order_id] = event.occurred_at
        futures.append(await producer.send(topic, value=event.model_dump_json().encode(),
                                           key=str(order_id).encode()))
    await asyncio.gather(*futures)
    return sent


async def _confirmed(ctx: Context, deal_id: int) -> int:
    # By deal (the index on hot_deal_id, status): cheap enough to poll while measuring.
    async with ctx.engine.connect() as conn:
        return int((await conn.execute(text(
            "SELECT count(*) FROM orders WHERE hot_deal_id = :d AND status = 'CONFIRMED'"),
            {"d": deal_id})).scalar_one())


async def _wait_confirmed(ctx: Context, deal_id: int, target: int, timeout: float) -> float:
    deadline = time.monotonic() + timeout
    while (done := await _confirmed(ctx, deal_id)) < target:
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out: {done} of {target} confirmed after {timeout} s")
        await asyncio.sleep(0.05)
    return time.monotonic()


async def _latencies(ctx: Context, sent: dict[uuid.UUID, datetime]) -> list[float]:
    async with ctx.engine.connect() as conn:
        rows = (await conn.execute(text(
            "SELECT id, updated_at FROM orders WHERE id = ANY(:ids)"),
            {"ids": list(sent)})).all()
    return sorted((row.updated_at - sent[row.id]).total_seconds() for row in rows)


def _pct(values: list[float], q: float) -> float:
    return values[min(len(values) - 1, int(q * len(values)))]


async def _group_members(group: str) -> int:
    admin = AIOKafkaAdminClient(bootstrap_servers=KAFKA)
    await admin.start()
    try:
        described = (await admin.describe_consumer_groups([group]))[0].to_object()
        return sum(len(g["members"]) for g in described["groups"] if g["state"] == "Stable")
    finally:
        await admin.close()


async def _wait_members(group: str, members: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while await _group_members(group) != members:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{group}: not {members} stable members within {timeout:g} s")
        await asyncio.sleep(0.2)


async def run(n: int, warmup: int, rate: float, timeout: float,
              workers: int = 1) -> dict[str, Any]:
    url = await _ensure_database()
    prefix = f"bench.{uuid.uuid4().hex[:8]}."
    topics = Topics(prefix)
    settings = Settings(_env_file=None, database_url=url, redis_url=REDIS_URL,
                        kafka_bootstrap_servers=KAFKA, kafka_topic_prefix=prefix)
    await ensure_topics(KAFKA, topics.all(), settings.kafka_partitions)
    engine = make_engine(settings, pool_size=5)
    redis = Redis.from_url(REDIS_URL, max_connections=200)
    store = RedisStockStore(redis)
    ctx = Context(engine=engine, stock=store, settings=settings, topics=topics)
    producer = AIOKafkaProducer(bootstrap_servers=KAFKA, acks="all", enable_idempotence=True,
                                linger_ms=5)
    run_dir = Path(tempfile.mkdtemp(prefix="bench-settlement-"))
    env = {"DATABASE_URL": url, "REDIS_URL": REDIS_URL, "KAFKA_BOOTSTRAP_SERVERS": KAFKA,
           "KAFKA_TOPIC_PREFIX": prefix}
    procs = [Proc("stock-worker" if workers == 1 else f"stock-worker-{i + 1}", run_dir, env,
                  module="stock_worker") for i in range(workers)]
    pid = deal_id = 0
    try:
        pid, deal_id, ids = await _setup(ctx, store, n + warmup)
        await producer.start()
        for worker in procs:
            worker.start()
        for worker in procs:
            worker.wait_ready(90)
        # Every worker holds its partitions before anything is measured (one consumer per
        # subscriber: payments and order requests).
        await _wait_members(prefix + "stock-worker", 2 * workers, 90)
        ps = [psutil.Process(worker.pid()) for worker in procs]
        warm, measured = ids[:warmup], ids[warmup:]
        await _publish(producer, topics.payments, warm, 0)
        await _wait_confirmed(ctx, deal_id, warmup, timeout)
        cpu_before = [p.cpu_times() for p in ps]
        started = time.monotonic()
        publishing = asyncio.create_task(_publish(producer, topics.payments, measured, rate))
        ended = await _wait_confirmed(ctx, deal_id, warmup + n, timeout)
        cpu_after = [p.cpu_times() for p in ps]
        sent = await publishing
        latencies = await _latencies(ctx, sent)
    finally:
        codes = [worker.stop() for worker in procs]
        await producer.stop()
        if pid:
            await store.drop(pid, deal_id)
        await redis.aclose()
        await engine.dispose()
        await _delete_topics(topics)
    seconds = ended - started
    cpu = sum((a.user + a.system) - (b.user + b.system)
              for a, b in zip(cpu_after, cpu_before, strict=True))
    return {
        "orders": n, "rate": rate or "max", "workers": workers, "seconds": round(seconds, 3),
        "orders_per_s": round(n / seconds, 1), "worker_cpu_s": round(cpu, 2),
        "worker_cpu_pct": round(100 * cpu / seconds, 1),
        "latency_p50_s": round(_pct(latencies, 0.50), 3),
        "latency_p95_s": round(_pct(latencies, 0.95), 3),
        "latency_max_s": round(latencies[-1], 3),
        "latency_mean_s": round(statistics.fmean(latencies), 3),
        "worker_exit": codes[0] if workers == 1 else codes,
        "worker_log": str(procs[0].log) if workers == 1 else [str(w.log) for w in procs],
        "machine": f"{platform.machine()}, {os.cpu_count()} cpus, {platform.python_version()}",
    }


async def _delete_topics(topics: Topics) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=KAFKA)
    await admin.start()
    try:
        await admin.delete_topics(topics.all())
    except Exception as exc:  # noqa: BLE001 - leftovers are harmless (own prefix)
        print(f"could not delete the bench topics: {exc}", file=sys.stderr)
    finally:
        await admin.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--orders", type=int, default=10_000)
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--rate", type=float, default=0.0, help="events/s; 0 = at once")
    parser.add_argument("--timeout", type=float, default=900.0)
    parser.add_argument("--workers", type=int, default=1, help="stock workers in the group")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    recorder = Recorder()
    result = asyncio.run(run(args.orders, args.warmup, args.rate, args.timeout,
                             args.workers))
    for key, value in result.items():
        print(f"{key:16} {value}")
    if args.json:
        recorder.write(args.json, result)


if __name__ == "__main__":
    main()
