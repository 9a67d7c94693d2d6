"""The order API's /metrics in the real app (create_app, its lifespan, Postgres, Redis):
with three live deals the official Prometheus parser reads the scrape, every family once;
each order outcome is counted once, whether the fast path or FastAPI answered it."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import httpx
import pytest
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from prometheus_client.parser import text_string_to_metric_families

from hotdeal_core.settings import Settings
from hotdeal_core.usecases import deals, products
from hotdeal_core.usecases.context import Context
from tests.buyers import buyer_headers
from tests.random_refs import random_name, random_user

pytestmark = pytest.mark.integration


@pytest.fixture
async def api(settings: Settings) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    from order_api.app import create_app
    app = create_app(settings)
    async with LifespanManager(app, startup_timeout=30, shutdown_timeout=30), \
            httpx.AsyncClient(transport=httpx.ASGITransport(app),
                              base_url="http://test") as client:
        yield app, client


async def _deal(ctx: Context, stock: int, limit: int = 1) -> int:
    product = await products.create_product(ctx, random_name("metrics"), 500, stock)
    await deals.start_deal(ctx, deals.StartDeal(product.id, stock, limit, 3600))
    return product.id


def _scrape(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    """name -> [(labels, value)] of every sample, by the official parser (which raises on a
    malformed scrape); every family must appear once."""
    families = list(text_string_to_metric_families(text))
    names = [f.name for f in families]
    assert len(names) == len(set(names)), sorted(n for n in names if names.count(n) > 1)
    return {f"{f.name}:{f.type}": [({**s.labels, "__name__": s.name}, s.value)
                                   for s in f.samples] for f in families}


def _sample(scrape: dict[str, list[tuple[dict[str, str], float]]], family: str, name: str,
            **labels: str) -> float:
    for sample_labels, value in scrape[family]:
        if sample_labels["__name__"] == name and labels.items() <= sample_labels.items():
            return value
    return 0.0


def _orders(scrape: dict[str, list[tuple[dict[str, str], float]]], outcome: str) -> float:
    return sum(v for labels, v in scrape["hotdeal_orders:counter"]
               if labels.get("outcome") == outcome)


async def test_a_scrape_with_three_live_deals_is_valid_and_has_each_deals_terms(
        api: tuple[FastAPI, httpx.AsyncClient]) -> None:
    app, client = api
    ctx: Context = app.state.ctx
    pids = [await _deal(ctx, 5) for _ in range(3)]
    for pid in pids:
        buyer = random_user()
        placed = await client.post("/orders", json={"product_id": pid, "user_id": buyer,
                                                    "quantity": 1}, headers=buyer_headers(buyer))
        assert placed.status_code == 202, placed.text
    answer = await client.get("/metrics")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain; version=0.0.4")
    scrape = _scrape(answer.text)
    for pid in pids:
        terms = {labels["term"]: value for labels, value in scrape["hotdeal_deal_units:gauge"]
                 if labels["product"] == str(pid)}
        assert terms == {"initial": 5, "on_sale": 4, "pending": 1, "confirmed": 0,
                         "in_flight": 0}, terms
        assert [v for labels, v in scrape["hotdeal_deal_audit_balanced:gauge"]
                if labels["product"] == str(pid)] == [1]
    assert scrape["hotdeal_kafka_connected:gauge"][0][1] in (0, 1)
    assert scrape["hotdeal_outbox_oldest_unpublished_seconds:gauge"][0][1] >= 0
    for family in ("hotdeal_http_request_duration_seconds:histogram",
                   "hotdeal_reservation_duration_seconds:histogram",
                   "hotdeal_outbox_published:counter"):
        assert family in scrape, sorted(scrape)


async def test_each_order_outcome_is_counted_once_by_whoever_answered(
        api: tuple[FastAPI, httpx.AsyncClient]) -> None:
    app, client = api
    ctx: Context = app.state.ctx
    before = _scrape((await client.get("/metrics")).text)
    pid = await _deal(ctx, 2)
    buyer = random_user()
    body = {"product_id": pid, "user_id": buyer, "quantity": 1}
    as_buyer, last = buyer_headers(buyer), random_user()
    codes = [(await client.post("/orders", json=body, headers=as_buyer)
              ).status_code]  # accepted (fast path)
    codes.append((await client.post("/orders", json=body, headers=as_buyer)
                  ).status_code)  # limit (fast path)
    codes.append((await client.post("/orders", json={**body, "user_id": last},
                                    headers=buyer_headers(last))).status_code)  # the last unit
    someone = random_user()
    other, as_other = {"product_id": pid, "user_id": someone, "quantity": 1}, \
        buyer_headers(someone)
    codes.append((await client.post("/orders", json=other, headers=as_other)
                  ).status_code)  # sold out
    codes.append((await client.post("/orders", json=other, headers=as_other)
                  ).status_code)  # memo'd sold out
    # A JSON content type the fast path leaves to FastAPI: the route answers (409 sold out);
    # a bad body gets FastAPI's 422.
    codes.append((await client.post("/orders", content=json.dumps(other), headers={
        **as_other, "Content-Type": "application/vnd.hotdeal+json"})).status_code)
    codes.append((await client.post("/orders", json={"product_id": "x"}, headers=as_other)
                  ).status_code)
    assert codes == [202, 409, 202, 409, 409, 409, 422], codes
    after = _scrape((await client.get("/metrics")).text)
    deltas = {o: _orders(after, o) - _orders(before, o)
              for o in ("accepted", "limit_exceeded", "sold_out", "rejected", "error")}
    assert deltas == {"accepted": 2, "limit_exceeded": 1, "sold_out": 3, "rejected": 1,
                      "error": 0}, deltas
    family = "hotdeal_http_request_duration_seconds:histogram"
    count = "hotdeal_http_request_duration_seconds_count"
    assert _sample(after, family, count, route="/orders", status="409") - _sample(
        before, family, count, route="/orders", status="409") == 4
    # A made-up path is one label, not one per path.
    await client.get(f"/nope/{random_user()}")
    unmatched = _scrape((await client.get("/metrics")).text)
    assert _sample(unmatched, family, count, route="unmatched", status="404") >= 1
