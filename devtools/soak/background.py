"""The soak's deal loop and sampler run each on a thread and event loop of their own: an
open-loop generator that falls behind saturates its own loop, and must not delay a sample
(its clock) or a deal's start (seen: a start whose Redis half waited 11 s on a busy loop)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar

from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import create_async_engine

from devtools.soak import probe
from devtools.soak.load import Tally
from hotdeal_core.settings import Settings

T = TypeVar("T")


class Background(threading.Thread, Generic[T]):
    """`factory()` run by asyncio.run on this thread; `outcome()` returns or raises it."""

    def __init__(self, name: str, factory: Callable[[], Awaitable[T]]) -> None:
        super().__init__(name=name, daemon=True)
        self.factory = factory
        self.result: T | None = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.result = asyncio.run(self._main())
        except BaseException as exc:  # noqa: BLE001 - raised by outcome(), on the caller's thread
            self.error = exc

    async def _main(self) -> T:
        return await self.factory()

    def outcome(self, timeout: float) -> T:
        self.join(timeout)
        if self.is_alive():
            raise TimeoutError(f"{self.name} still running after {timeout:g} s")
        if self.error is not None:
            raise RuntimeError(f"{self.name} failed: {self.error!r}") from self.error
        assert self.result is not None
        return self.result


async def sample_every(interval: float, settings: Settings, cpu: probe.CpuMeter, tally: Tally,
                       stop: threading.Event, t0: float) -> list[dict[str, Any]]:
    """One sample per `interval` until `stop`; a failed one is a gap, said in the log."""
    engine = create_async_engine(settings.database_url, pool_size=2)
    redis = Redis.from_url(settings.redis_url)
    lag = probe.LagReader(settings.kafka_bootstrap_servers,
                          [settings.kafka_topic_prefix + g for g in ("stock-worker", "reconciler")])
    samples: list[dict[str, Any]] = []
    try:
        await lag.start()
        next_at = t0 + interval
        while not stop.wait(max(0.0, next_at - time.monotonic())):
            began, next_at = time.monotonic(), next_at + interval
            try:
                row = await probe.sample(t0, cpu, engine, redis, lag, tally)
            except Exception as exc:  # noqa: BLE001
                print(f"[soak] sample skipped: {type(exc).__name__}: {exc}", flush=True)
                continue
            row["orders_per_s"] = round(row["orders_per_s"] / interval, 1)
            row["sample_ms"] = round((time.monotonic() - began) * 1000, 1)
            samples.append(row)
    finally:
        await lag.close()
        await redis.aclose()
        await engine.dispose()
    return samples
