"""What tracing costs on the order path, in-process, without services.

    .venv/bin/python -m benchmarks.tracing [--requests 20000] [--concurrency 50] [--runs 5]
                                           [--json docs/scenarios/results/tracing.json]

`POST /orders` through `create_app`'s whole stack (tracing's server layer when on, the
metrics layer, the fast path, the use case with its reservation and group-commit batchers)
on the in-memory stock store and an order writer that answers without Postgres, so what is
timed is the Python work per accepted order. `--concurrency` requests at a time, so the
batchers form batches as under load. Three modes, alternately in each run: tracing off,
on sampled at 1 %, on at 100 % (the SDK's batch processor with an exporter that drops the
spans: the SDK's cost, not a collector's). Prints the fastest and the median of the runs, in
microseconds per request; the relay's and the consumers' spans are not on this path.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import statistics
import time
from collections.abc import MutableMapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

from hotdeal_core.batching import Batcher
from hotdeal_core.domain import OrderStatus
from hotdeal_core.identity import TokenMinter
from hotdeal_core.messaging.topics import Topics
from hotdeal_core.observability import tracing
from hotdeal_core.ports.orders import ReservedOrder
from hotdeal_core.settings import Settings
from hotdeal_core.stock.fake import FakeStockStore
from hotdeal_core.stock.reserver import reservation_batcher
from hotdeal_core.usecases.context import Context
from hotdeal_core.usecases.views import OrderView
from order_api.app import create_app

PRODUCT = 7
BUYERS = 200


class _Dropped(SpanExporter):
    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS


async def _write(items: list[ReservedOrder]) -> list[OrderView | BaseException]:
    """The group commit's answer without Postgres (what `write_reserved_orders` returns)."""
    created = datetime.now(UTC)
    return [OrderView(i.order_id, i.product_id, i.deal_id, i.user_id, i.quantity,
                      i.unit_price, OrderStatus.PENDING, None,
                      created + timedelta(seconds=i.ttl_seconds), created, created)
            for i in items]


def _app(settings: Settings) -> FastAPI:
    """create_app's stack with an in-memory context (its lifespan is not run)."""
    app = create_app(settings)
    store = FakeStockStore()
    ctx = Context(engine=None, stock=store, settings=settings,  # type: ignore[arg-type]
                  topics=Topics("bench."))
    ctx.reserver = reservation_batcher(store, settings.write_batch_max)
    ctx.order_writer = Batcher("orders", _write, max_batch=settings.write_batch_max)
    app.state.ctx = ctx
    return app


async def _open(app: FastAPI) -> None:
    ctx: Context = app.state.ctx
    await ctx.stock.open(PRODUCT, 1, 10**12, 10**12, 1, 1000)


async def _requests(app: FastAPI, headers: list[list[tuple[bytes, bytes]]], n: int,
                    concurrency: int) -> float:
    """µs per request for `n` orders, `concurrency` at a time."""
    body = json.dumps({"product_id": PRODUCT, "quantity": 1}).encode()
    statuses: list[int] = []

    async def one(i: int) -> None:
        scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
                 "method": "POST", "path": "/orders", "raw_path": b"/orders",
                 "query_string": b"", "root_path": "", "scheme": "http",
                 "server": ("test", 80), "client": ("10.0.0.1", 1000),
                 "headers": headers[i % len(headers)]}

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(message: MutableMapping[str, Any]) -> None:
            if message["type"] == "http.response.start":
                statuses.append(message["status"])

        await app(scope, receive, send)

    ctx: Context = app.state.ctx
    assert ctx.reserver is not None and ctx.order_writer is not None
    ctx.reserver.start()
    ctx.order_writer.start()
    try:
        start = time.perf_counter()
        for first in range(0, n, concurrency):
            await asyncio.gather(*(one(i) for i in range(first, min(n, first + concurrency))))
        elapsed = time.perf_counter() - start
    finally:
        await ctx.reserver.stop()
        await ctx.order_writer.stop()
    refused = [s for s in statuses if s != 202]
    assert not refused, f"{len(refused)} orders not accepted (e.g. {refused[0]})"
    return elapsed / n * 1e6


def _trace(ratio: float | None) -> None:
    tracing.uninstall()
    if ratio is not None:
        # As configure() sets the API up: the request decides, the SDK keeps its roots.
        provider = tracing.new_provider("bench", 1.0)
        provider.add_span_processor(BatchSpanProcessor(_Dropped()))
        tracing.install(provider, head_ratio=ratio)


async def main(n: int, concurrency: int, runs: int) -> dict[str, Any]:
    settings = Settings(_env_file=None, order_rate_per_buyer=0, allow_dev_secrets=True)
    minter = TokenMinter(settings)
    headers = [[(b"content-type", b"application/json"),
                (b"authorization", f"Bearer {minter.token(f'buyer-{b}')}".encode())]
               for b in range(BUYERS)]
    modes: dict[str, float | None] = {"off": None, "sampled_1pct": 0.01,
                                      "sampled_100pct": 1.0}

    async def timed(ratio: float | None, requests: int) -> float:
        _trace(ratio)
        app = _app(settings)  # a fresh app and store per measurement; built in the mode
        await _open(app)
        return await _requests(app, headers, requests, concurrency)

    for ratio in modes.values():  # warm up every path
        await timed(ratio, n // 5)
    timings: dict[str, list[float]] = {name: [] for name in modes}
    for _ in range(runs):
        for name, ratio in modes.items():
            timings[name].append(await timed(ratio, n))
    _trace(None)
    result: dict[str, Any] = {
        "benchmark": "benchmarks/tracing.py", "requests_per_run": n,
        "concurrency": concurrency, "runs": runs, "python": platform.python_version(),
        "us_per_request": {name: {"fastest": round(min(t), 2),
                                  "median": round(statistics.median(t), 2),
                                  "runs": [round(x, 2) for x in t]}
                           for name, t in timings.items()}}
    off = min(timings["off"])
    for name, t in timings.items():
        print(f"{name:15} {min(t):7.1f} us/request fastest, {statistics.median(t):7.1f} "
              f"median  (+{min(t) - off:.1f} us over off)")
    return result


def _write_json(out: str, result: dict[str, Any]) -> None:
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"written to {out}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--json", default=None, help="write the result to this file")
    args = parser.parse_args()
    measured = asyncio.run(main(args.requests, args.concurrency, args.runs))
    if args.json:
        _write_json(args.json, measured)
