"""A deal's stock and orders sampled every second during a swarm into `samples.csv`, on its
own thread and loop (what `hotdeal deal watch` reads); a failed sample is a gap, not an
error."""

from __future__ import annotations

import asyncio
import csv
import threading
import time
from pathlib import Path

from hotdeal_cli.context import open_context
from hotdeal_cli.watch import read_sample
from hotdeal_core.errors import is_retriable
from hotdeal_core.settings import Settings, load_settings

COLUMNS = ("t", "status", "on_sale", "pending", "confirmed", "cancelled", "accepted_per_s",
           "unsettled")


class DealSampler:
    def __init__(self, deal_id: int, path: Path, interval: float = 1.0,
                 settings: Settings | None = None) -> None:
        self.deal_id, self.path, self.interval = deal_id, path, interval
        self.settings = settings
        self.rows = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="deal-sampler", daemon=True)
        self._error: BaseException | None = None

    def start(self) -> DealSampler:
        self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Take no more samples; raises what ended the sampler early, if anything did."""
        self._stop.set()
        self._thread.join(timeout)
        if self._error is not None:
            raise RuntimeError(f"the deal sampler failed: {self._error}") from self._error

    def _run(self) -> None:
        try:
            asyncio.run(self._sample())
        except Exception as exc:  # noqa: BLE001 - reported by stop(), on the caller's thread
            self._error = exc

    async def _sample(self) -> None:
        settings = self.settings or load_settings()
        with self.path.open("w", newline="") as f:
            out = csv.writer(f)
            out.writerow(COLUMNS)
            async with open_context(settings) as ctx:
                loop = asyncio.get_running_loop()
                while not self._stop.is_set():
                    began = loop.time()
                    try:
                        s = await read_sample(ctx, self.deal_id, None, began)
                    except Exception as exc:
                        if not is_retriable(exc):
                            raise
                        s = None
                    if s is not None:
                        out.writerow([f"{time.time():.3f}", s.status,
                                      "" if s.stock_left is None else s.stock_left,
                                      s.orders.get("PENDING", 0), s.orders.get("CONFIRMED", 0),
                                      s.orders.get("CANCELLED", 0), f"{s.accepted_per_s:g}",
                                      s.unsettled])
                        f.flush()
                        self.rows += 1
                    await asyncio.to_thread(self._stop.wait,
                                            max(0.0, began + self.interval - loop.time()))
