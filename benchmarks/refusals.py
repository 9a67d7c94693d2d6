"""What a `429 rate_limited` costs next to a `409 sold_out`, through the order API's whole
ASGI stack, in-process (no server, no socket).

    .venv/bin/python -m benchmarks.refusals [--calls 20000] [--runs 5]

The app is `create_app`'s, its lifespan not run: its state gets a context whose sold-out
memo holds the product (no Redis, no Postgres is reached by these answers). Each case sends
the same well-formed `POST /orders`; prints per request the fastest and the median of the
runs (the fastest is the least disturbed by other load):

- sold_out: the fast path's refusal from the memo (rate limits off);
- sold_out + limits: the same, with the default per-buyer limit and a per-address limit on,
  each request a new buyer (what every admitted order pays for the limits);
- 429 buyer: one buyer over its rate (the refusal after the body is read);
- 429 address: one address over its rate (the refusal before the body is read).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import statistics
import time
from typing import Any

from hotdeal_core.settings import Settings
from hotdeal_core.stock.fake import FakeStockStore
from hotdeal_core.stock.sold_out import SoldOutMemo
from order_api.app import create_app
from order_api.limits import OrderLimits, RateLimiter

PRODUCT = 7
HEADERS = [(b"host", b"bench"), (b"content-type", b"application/json")]


def _app(limits: OrderLimits) -> Any:
    app = create_app(Settings(_env_file=None, allow_dev_secrets=True))
    memo = SoldOutMemo(3_600_000)
    memo.remember(PRODUCT)
    app.state.ctx = type("Ctx", (), {"sold_out": memo, "stock": FakeStockStore()})()
    app.state.order_limits = limits
    return app


async def _per_call(app: Any, calls: int, buyers: itertools.count[int] | None) -> float:
    """Microseconds per request; `buyers`: a new buyer id each request, else always one."""
    statuses: set[int] = set()

    async def send(message: Any) -> None:
        if message["type"] == "http.response.start":
            statuses.add(message["status"])
    start = time.perf_counter()
    for _ in range(calls):
        buyer = f"b-{next(buyers)}" if buyers is not None else "b-0"
        body = f'{{"product_id": {PRODUCT}, "user_id": "{buyer}", "quantity": 1}}'.encode()

        async def receive(body: bytes = body) -> dict[str, Any]:
            return {"type": "http.request", "body": body, "more_body": False}
        await app({"type": "http", "method": "POST", "path": "/orders", "headers": HEADERS,
                   "client": ("10.0.0.1", 40000), "query_string": b"", "root_path": "",
                   "http_version": "1.1", "scheme": "http", "server": ("bench", 80)},
                  receive, send)
    elapsed = (time.perf_counter() - start) / calls * 1e6
    assert len(statuses) == 1, statuses  # every answer the same kind
    return elapsed


async def main(calls: int, runs: int) -> None:
    slow = RateLimiter(0.001, 1)  # one admission, then refusals for 1,000 s
    cases = {
        "sold_out": (_app(OrderLimits(None, None)), True),
        "sold_out + limits": (_app(OrderLimits(RateLimiter(2.0, 5), RateLimiter(1e9, 10**9))),
                              True),
        "429 buyer": (_app(OrderLimits(slow, None)), False),
        "429 address": (_app(OrderLimits(None, RateLimiter(0.001, 1))), False),
    }
    fresh = itertools.count()
    for app, new_buyers in cases.values():  # warm up; the limited ones spend their burst
        await _per_call(app, 1, fresh if new_buyers else None)
        await _per_call(app, calls // 5, fresh if new_buyers else None)
    figures: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(runs):
        for name, (app, new_buyers) in cases.items():
            figures[name].append(await _per_call(app, calls, fresh if new_buyers else None))
    for name, values in figures.items():
        median = statistics.median(values)
        print(f"{name:18} {min(values):6.1f} us per request (median {median:.1f}; {runs} runs "
              f"of {calls:,})")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    asyncio.run(main(args.calls, args.runs))
