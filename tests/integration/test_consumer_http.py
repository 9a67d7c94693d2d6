"""A consumer process's HTTP port (METRICS_PORT, served by uvicorn through FastStream's ASGI
app): ready once subscribed, /healthz and /metrics with its group's lag, gone after a
graceful stop. `devtools.procs` awaits it there (`make up`, the e2e and chaos runs)."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from devtools.procs import Proc


async def test_a_consumer_answers_on_its_port_once_ready_and_not_after_it_stopped(
        tmp_path: Path) -> None:
    proc = Proc("reconciler", tmp_path).start()
    try:
        await asyncio.to_thread(proc.wait_ready, 90)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{proc.env['METRICS_PORT']}",
                                     timeout=10) as client:
            answers = [(await client.get(path)).status_code for path in ("/readyz", "/healthz")]
            scrape = (await client.get("/metrics")).text
    finally:
        await asyncio.to_thread(proc.stop, 60)
    assert answers == [200, 200]
    groups = {s.labels["group"] for f in text_string_to_metric_families(scrape)
              for s in f.samples if s.name == "hotdeal_consumer_lag"}
    assert groups == {f"{os.environ['KAFKA_TOPIC_PREFIX']}reconciler"}, scrape[-2000:]
    assert "stopped gracefully" in proc.log.read_text()
    assert not proc.is_ready()
