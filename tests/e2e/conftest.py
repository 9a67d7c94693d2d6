"""The real processes, started once for the e2e tier: three API replicas (Redis stock; a
1-second reservation TTL; Postgres stock, the old design), one stock worker, one reconciler."""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import uuid4

import httpx
import pytest

from devtools.procs import Proc
from hotdeal_core.signature import sign
from hotdeal_core.usecases.context import Context
from hotdeal_core.usecases.products import create_product
from tests.buyers import buyer_headers
from tests.random_refs import random_name
from tests.waiting import eventually as eventually

ADMIN = "e2e-admin-token"
SECRET = "e2e-webhook-secret"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def base_env() -> dict[str, str]:
    return {"DATABASE_URL": os.environ["DATABASE_URL"], "REDIS_URL": os.environ["REDIS_URL"],
            "KAFKA_TOPIC_PREFIX": os.environ["KAFKA_TOPIC_PREFIX"], "ADMIN_TOKEN": ADMIN,
            "PAYMENT_WEBHOOK_SECRET": SECRET, "SWEEP_INTERVAL_SECONDS": "0.2",
            "RECONCILE_INTERVAL_SECONDS": "0.3", "ORPHAN_GRACE_SECONDS": "10",
            "OUTBOX_POLL_INTERVAL_MS": "20",
            # The old design queues 1,000 buyers on one row: let them wait, not shed them.
            "DB_POOL_TIMEOUT": "60",
            # The swarm (locust) reuses each buyer id without pause from one address: no
            # per-buyer rate limit (tests/integration/test_rate_limits_api.py tests it).
            "ORDER_RATE_PER_BUYER": "0"}


@dataclass
class Stack:
    run_dir: Path
    api: Proc
    api_short_ttl: Proc
    api_db: Proc
    worker: Proc
    reconciler: Proc

    def all(self) -> list[Proc]:
        return [self.api, self.api_short_ttl, self.api_db, self.worker, self.reconciler]


def api_proc(name: str, run_dir: Path, **extra: str) -> Proc:
    env = {**base_env(), "ORDER_API_PORT": str(free_port()), **extra}
    return Proc(name, run_dir, env, module="order_api")


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    run_dir = tmp_path_factory.mktemp("run")
    s = Stack(run_dir,
              api=api_proc("order-api", run_dir),
              api_short_ttl=api_proc("order-api-short-ttl", run_dir, RESERVATION_TTL_SECONDS="1"),
              api_db=api_proc("order-api-db", run_dir, HOTDEAL_STOCK_REDIS="false"),
              worker=Proc("stock-worker", run_dir,
                          {**base_env(), "METRICS_PORT": str(free_port())}),
              reconciler=Proc("reconciler", run_dir,
                              {**base_env(), "METRICS_PORT": str(free_port())}))
    try:
        for p in s.all():
            p.start()
        for p in s.all():
            p.wait_ready(90)
        yield s
    finally:
        codes = {p.name: p.stop() for p in s.all()}
    # Graceful shutdown on SIGTERM: every process finishes its shutdown (uvicorn re-raises
    # the SIGTERM after its own graceful shutdown, hence -15 for the APIs and consumers).
    for p in s.all():
        assert codes[p.name] in (0, -15), (p.name, codes[p.name])
        assert "stopped gracefully" in p.log.read_text(), p.name



@pytest.fixture
async def client(stack: Stack) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=stack.api.api_url, timeout=30) as c:
        yield c


async def order_status(client: httpx.AsyncClient, order: dict[str, Any], status: str,
                       timeout: float = 30) -> dict[str, Any]:
    """Wait until `order` (an order answer: its id and buyer) reads `status`, as its buyer."""
    order_id, as_buyer = order["order_id"], buyer_headers(order["user_id"])

    async def probe() -> dict[str, Any] | None:
        body: dict[str, Any] = (await client.get(f"/orders/{order_id}",
                                                 headers=as_buyer)).json()
        return body if body.get("status") == status else None
    return await eventually(probe, timeout, f"order {order_id} to be {status}")


def signed(payload: dict[str, Any], secret: str = SECRET,
           at: int | None = None) -> tuple[bytes, dict[str, str]]:
    raw = json.dumps(payload).encode()
    header = sign(secret, int(time.time()) if at is None else at, raw)
    return raw, {"X-Payment-Signature": header, "Content-Type": "application/json"}


async def pay(client: httpx.AsyncClient, order: dict[str, Any], status: str = "succeeded",
              payment_id: str | None = None) -> httpx.Response:
    raw, headers = signed({"payment_id": payment_id or f"pay-{uuid4()}",
                           "order_id": order["order_id"], "status": status,
                           "amount": order["total"]})
    return await client.post("/payments/webhook", content=raw, headers=headers)


async def start_hot_deal(ctx: Context, client: httpx.AsyncClient, stock: int,
                         limit: int = 1, price: int = 1000) -> int:
    pid = (await create_product(ctx, random_name(), price, stock)).id
    resp = await client.post(f"/products/{pid}/hotdeal/start",
                             json={"stock": stock, "per_user_limit": limit,
                                   "opening_window_seconds": 0},
                             headers={"Authorization": f"Bearer {ADMIN}"})
    assert resp.status_code == 201, resp.text
    return pid
