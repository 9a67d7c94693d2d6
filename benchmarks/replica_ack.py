"""What the replica ack (WAIT 1 <timeout> after the reserve script) costs on the order path.

    scripts/cluster/redis.sh up      # (or any Redis Cluster: HOTDEAL_BENCH_REDIS_URL)
    .venv/bin/python -m benchmarks.replica_ack [--ops 3000] [--ack-ms 100] [--json out.json]

The stock step of POST /orders as the order API runs it: `reservation_batcher` over
`RedisStockStore` (one script call per deal per batch, one round trip per node), on a Redis
Cluster, at concurrency 1 and 100 (tasks sharing one counter until --ops reservations are
done, after an unrecorded warm-up), first without the ack, then with it (the same deal,
new order ids and users throughout). Latency is time.perf_counter() around the submit, as
in benchmarks/reservation.py, whose driver this reuses. A deal on a random product id
>= 900_000_000, dropped at the end; HOTDEAL_BENCH_REDIS_URL defaults to the cluster of
scripts/cluster/redis.sh (redis://127.0.0.1:17001/0).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import random
import uuid
from dataclasses import asdict, replace
from pathlib import Path

from benchmarks.reservation import CONCURRENCIES, HUGE_STOCK, Result, drive, measure
from devtools.tables import markdown_table
from hotdeal_core.batching import Batcher
from hotdeal_core.settings import Settings
from hotdeal_core.stock.client import close_redis, make_redis
from hotdeal_core.stock.port import ReserveOutcome, ReserveRequest, ReserveResult
from hotdeal_core.stock.redis_store import RedisStockStore
from hotdeal_core.stock.reserver import ReserveItem, reservation_batcher

# The first node of scripts/cluster/redis.sh (scripts/lib/ports.sh).
REDIS_URL = os.environ.get("HOTDEAL_BENCH_REDIS_URL", "redis://127.0.0.1:17001/0")


async def bench(ops: int, warmup: int, ack_ms: int) -> list[Result]:
    redis = make_redis(Settings(_env_file=None, redis_url=REDIS_URL, redis_cluster=True),
                       max_connections=max(CONCURRENCIES) + 10)
    product_id = 900_000_000 + random.randrange(99_000_000)
    deal_id = random.randrange(1, 2**31)
    users = itertools.count()
    tag = uuid.uuid4().hex[:8]
    results: list[Result] = []
    try:
        if not await RedisStockStore(redis).open(product_id, deal_id, HUGE_STOCK, 1_000_000,
                                                 epoch=1, unit_price=100):
            raise RuntimeError(f"could not open a bench deal on product {product_id}")
        for label, timeout in (("no ack", 0), (f"WAIT 1 {ack_ms}", ack_ms)):
            batcher = reservation_batcher(RedisStockStore(redis, timeout), max_batch=1000)

            async def reserve(_: int, batcher: Batcher[ReserveItem, ReserveResult] = batcher,
                              ) -> None:
                result = await batcher.submit(ReserveItem(product_id, ReserveRequest(
                    uuid.uuid4(), f"bench-{tag}-{next(users)}", 1)))
                if result.outcome is not ReserveOutcome.RESERVED:
                    raise RuntimeError(f"reserve returned {result.outcome.name}")

            batcher.start()
            try:
                for concurrency in CONCURRENCIES:
                    await drive(reserve, warmup, concurrency)
                    batches = batcher.stats.batches
                    result = await measure(label, reserve, ops, concurrency, 0)
                    results.append(replace(result, server_calls=batcher.stats.batches - batches))
            finally:
                await batcher.stop()
        return results
    finally:
        await RedisStockStore(redis).drop(product_id, deal_id)
        await close_redis(redis)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ops", type=int, default=3000)
    parser.add_argument("--warmup", type=int, default=300)
    parser.add_argument("--ack-ms", type=int, default=100)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    results = asyncio.run(bench(args.ops, args.warmup, args.ack_ms))
    print("\n".join(markdown_table(
        ["reservation", "concurrency", "ops/s", "p50 ms", "p99 ms", "batches"],
        [[r.backend, r.concurrency, f"{r.ops_per_s:,.0f}", f"{r.p50_ms:.2f}", f"{r.p99_ms:.2f}",
          r.server_calls] for r in results], "lrrrrr")))
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in results], indent=2))


if __name__ == "__main__":
    main()
