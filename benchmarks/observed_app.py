"""What the order API's per-request metrics cost (order_api/observe.py), in-process.

    .venv/bin/python -m benchmarks.observed_app [--calls 50000] [--runs 5]

Calls `ObservedApp` around a trivial ASGI answer (a sold-out refusal as the fast path sends
it) and the same answer alone, alternately, and prints the difference per request: the
fastest and the median of the runs (the fastest is the least disturbed by other load).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from typing import Any

from order_api.observe import OUTCOME, ObservedApp


async def _answer(scope: Any, receive: Any, send: Any) -> None:
    scope[OUTCOME] = "sold_out"
    await send({"type": "http.response.start", "status": 409, "headers": []})
    await send({"type": "http.response.body", "body": b"{}"})


async def _send(message: Any) -> None:
    return None


async def _receive() -> dict[str, str]:
    return {"type": "http.request"}


async def _per_call(app: Any, calls: int) -> float:
    start = time.perf_counter()
    for _ in range(calls):
        await app({"type": "http", "method": "POST", "path": "/orders"}, _receive, _send)
    return (time.perf_counter() - start) / calls * 1e6


async def main(calls: int, runs: int) -> None:
    observed = ObservedApp(_answer)
    await _per_call(_answer, calls // 5)  # warm up both
    await _per_call(observed, calls // 5)
    added = []
    for _ in range(runs):
        alone = await _per_call(_answer, calls)
        added.append(await _per_call(observed, calls) - alone)
    print(f"ObservedApp adds {min(added):.2f} us per request (fastest of {runs} runs of "
          f"{calls:,}; median {statistics.median(added):.2f} us)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=50_000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    asyncio.run(main(args.calls, args.runs))
