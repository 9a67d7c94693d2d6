"""Order rate limits in the real app (create_app, its lifespan, Postgres and Redis): a buyer
or an address over its rate gets 429 rate_limited with Retry-After, the same bytes from the
fast path and from the route, before any stock work; other buyers are still served."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from prometheus_client import REGISTRY

from hotdeal_core.settings import Settings
from hotdeal_core.usecases import deals, products
from hotdeal_core.usecases.context import Context
from order_api.app import create_app
from order_api.limits import OrderLimits
from tests.buyers import buyer_headers
from tests.random_refs import random_name, random_user

# A rate no test outlives: one order per 1,000 s after the burst, so nothing is timing-bound.
SLOW = 0.001


@dataclass
class Api:
    app: FastAPI
    client: httpx.AsyncClient

    @property
    def ctx(self) -> Context:
        ctx: Context = self.app.state.ctx
        return ctx

    def limit(self, **settings: Any) -> None:
        """Fresh limits from these settings (both order paths read the app's state)."""
        self.app.state.order_limits = OrderLimits.from_settings(
            Settings.model_validate(settings))

    async def deal(self, stock: int = 100, per_user_limit: int = 100) -> int:
        product = await products.create_product(self.ctx, random_name("limits"), 1000, stock)
        await deals.start_deal(self.ctx, deals.StartDeal(product.id, stock, per_user_limit,
                                                         3600))
        return product.id

    async def order(self, product_id: int, user: str, *, routed: bool = False,
                    headers: dict[str, str] | None = None) -> httpx.Response:
        """POST /orders; `routed`: with a JSON media type the fast path leaves to FastAPI."""
        body = json.dumps({"product_id": product_id, "user_id": user, "quantity": 1})
        content_type = "application/vnd.hotdeal+json" if routed else "application/json"
        return await self.client.post("/orders", content=body, headers=buyer_headers(
            user, **{"Content-Type": content_type, **(headers or {})}))


@pytest.fixture(scope="module")
async def api() -> AsyncIterator[Api]:
    app = create_app(Settings(_env_file=None))
    async with LifespanManager(app, startup_timeout=30, shutdown_timeout=30), \
            httpx.AsyncClient(transport=httpx.ASGITransport(app),
                              base_url="http://test") as client:
        yield Api(app, client)
    await app.state.resources.redis.connection_pool.aclose()


def _rate_limited_count() -> float:
    return REGISTRY.get_sample_value("hotdeal_orders_total", {"outcome": "rate_limited"}) or 0.0


async def test_a_buyer_over_the_rate_gets_the_same_429_from_the_fast_path_and_the_route(
        api: Api) -> None:
    api.limit(order_rate_per_buyer=SLOW, order_burst_per_buyer=1)
    pid, buyer = await api.deal(), random_user()
    assert (await api.order(pid, buyer)).status_code == 202
    counted = _rate_limited_count()
    fast, routed = await api.order(pid, buyer), await api.order(pid, buyer, routed=True)
    assert fast.status_code == routed.status_code == 429
    assert fast.content == routed.content
    assert fast.headers.multi_items() == routed.headers.multi_items()
    assert fast.json()["error"]["code"] == "rate_limited"
    assert fast.headers["Retry-After"] == "1000"  # the limiter's wait, in whole seconds
    assert _rate_limited_count() == counted + 2  # each answer counted once, by outcome


@pytest.mark.parametrize("routed", [False, True], ids=["fast-path", "route"])
async def test_a_flood_from_one_buyer_is_refused_while_another_buyer_is_served(
        api: Api, routed: bool) -> None:
    api.limit(order_rate_per_buyer=SLOW, order_burst_per_buyer=3)
    pid, flooder, other = await api.deal(), random_user(), random_user()
    statuses = [(await api.order(pid, flooder, routed=routed)).status_code
                for _ in range(20)]
    assert statuses == [202] * 3 + [429] * 17
    assert (await api.order(pid, other, routed=routed)).status_code == 202


@pytest.mark.parametrize("routed", [False, True], ids=["fast-path", "route"])
async def test_a_rate_limited_order_does_no_stock_work(api: Api, routed: bool) -> None:
    api.limit(order_rate_per_buyer=SLOW, order_burst_per_buyer=1)
    pid, buyer = await api.deal(stock=10), random_user()
    first = await api.order(pid, buyer, routed=routed)
    assert first.status_code == 202
    before = await api.ctx.stock.snapshot(pid)
    for _ in range(5):
        assert (await api.order(pid, buyer, routed=routed)).status_code == 429
    after = await api.ctx.stock.snapshot(pid)
    assert after.stock == before.stock == 9
    assert [r.order_id for r in after.reservations] == [r.order_id for r in before.reservations]
    assert [r.user_id for r in after.reservations] == [buyer]


async def test_a_spoofed_forwarded_header_is_ignored_by_default(api: Api) -> None:
    api.limit(order_rate_per_address=SLOW, order_burst_per_address=2)
    pid = await api.deal()
    statuses = [(await api.order(pid, random_user(), headers={
        "X-Forwarded-For": f"203.0.113.{i}"})).status_code for i in range(4)]
    # every request is the test client's peer address, whatever it claims
    assert statuses == [202, 202, 429, 429]


async def test_the_trusted_header_gives_each_client_its_own_address(api: Api) -> None:
    api.limit(order_rate_per_address=SLOW, order_burst_per_address=2,
              trusted_client_ip_header="X-Forwarded-For")
    pid = await api.deal()

    async def from_(client: str) -> int:
        # the left entry is whatever the client wrote; the proxy appended the right-most
        return (await api.order(pid, random_user(), headers={
            "X-Forwarded-For": f"{random_user()}, {client}"})).status_code
    assert [await from_("203.0.113.1") for _ in range(3)] == [202, 202, 429]
    assert await from_("203.0.113.2") == 202
    limited = await from_("203.0.113.1")
    assert limited == 429
