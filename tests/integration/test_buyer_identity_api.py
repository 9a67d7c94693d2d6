"""Buyer identity in the real app (create_app, its lifespan, Postgres and Redis): the fast
path and FastAPI alone give the same bytes for every token case the fast path answers, a
request without a valid token places no order, and a buyer reads and cancels only their
own orders."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from sqlalchemy import func, select

from hotdeal_core.db.tables import orders, outbox
from hotdeal_core.settings import Settings
from hotdeal_core.usecases import deals, products
from hotdeal_core.usecases.context import Context
from order_api.app import create_app
from tests.buyers import buyer_headers, without_fast_path
from tests.random_refs import random_name, random_user
from tests.unit.test_buyer_routes import BAD


@dataclass
class Apis:
    fast: httpx.AsyncClient  # the app as it runs (fast path first)
    alone: httpx.AsyncClient  # the same resources through FastAPI alone
    app: FastAPI

    @property
    def ctx(self) -> Context:
        ctx: Context = self.app.state.ctx
        return ctx

    async def deal(self, units: int = 5) -> int:
        product = await products.create_product(self.ctx, random_name("id"), 1000, units)
        await deals.start_deal(self.ctx, deals.StartDeal(product.id, units, 1, 3600))
        return product.id

    async def orders_of(self, product_id: int) -> int:
        async with self.ctx.engine.connect() as conn:
            return int((await conn.execute(select(func.count()).select_from(orders).where(
                orders.c.product_id == product_id))).scalar_one())


def _client(app: FastAPI) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://test")


@pytest.fixture(scope="module")
async def apis() -> AsyncIterator[Apis]:
    settings = Settings(_env_file=None)
    app, alone = create_app(settings), without_fast_path(create_app(settings))
    async with LifespanManager(app, startup_timeout=30, shutdown_timeout=30), \
            _client(app) as fast, _client(alone) as plain:
        alone.state.ctx, alone.state.resources = app.state.ctx, app.state.resources
        yield Apis(fast, plain, app)
    await app.state.resources.redis.connection_pool.aclose()


def _same(a: httpx.Response, b: httpx.Response) -> None:
    assert (a.status_code, a.content) == (b.status_code, b.content)
    assert a.headers.multi_items() == b.headers.multi_items()


@pytest.mark.parametrize(("authorization", "code"), [(a, c) for _, a, c in BAD],
                         ids=[name for name, _, _ in BAD])
async def test_without_a_valid_token_both_paths_answer_the_same_401_and_place_no_order(
        apis: Apis, authorization: bytes | None, code: str) -> None:
    pid = await apis.deal()
    headers = {} if authorization is None else {"Authorization": authorization.decode()}
    body = {"product_id": pid, "user_id": "u-1", "quantity": 1}
    fast = await apis.fast.post("/orders", json=body, headers=headers)
    alone = await apis.alone.post("/orders", json=body, headers=headers)
    _same(fast, alone)
    assert fast.status_code == 401 and fast.json()["error"]["code"] == code
    assert fast.headers["www-authenticate"] == 'Bearer error="invalid_token"'
    assert await apis.orders_of(pid) == 0  # 0 orders accepted
    assert (await products.get_product(apis.ctx, pid)).deal.remaining == 5  # type: ignore[union-attr]


async def test_a_body_naming_another_buyer_is_the_same_403_on_both_paths(apis: Apis) -> None:
    pid = await apis.deal()
    body, as_other = {"product_id": pid, "user_id": random_user(), "quantity": 1}, \
        buyer_headers(random_user())
    fast = await apis.fast.post("/orders", json=body, headers=as_other)
    _same(fast, await apis.alone.post("/orders", json=body, headers=as_other))
    assert fast.status_code == 403 and fast.json()["error"]["code"] == "buyer_mismatch"
    assert await apis.orders_of(pid) == 0


async def test_a_body_without_user_id_orders_for_the_tokens_buyer_on_both_paths(
        apis: Apis) -> None:
    pid = await apis.deal()
    for client in (apis.fast, apis.alone):
        buyer = random_user()
        placed = await client.post("/orders", json={"product_id": pid, "quantity": 1},
                                   headers=buyer_headers(buyer))
        assert placed.status_code == 202, placed.text
        assert placed.json()["user_id"] == buyer
    assert await apis.orders_of(pid) == 2


@pytest.mark.parametrize("body", [b"{not json", b'{"product_id": 1}', b"\xc3\x28", b""])
async def test_a_bad_body_is_401_without_a_token_and_422_with_one_on_both_paths(
        apis: Apis, body: bytes) -> None:
    json_type = {"Content-Type": "application/json"}
    for headers, status in ((json_type, 401), ({**json_type, **buyer_headers("u-1")}, 422)):
        fast = await apis.fast.post("/orders", content=body, headers=headers)
        _same(fast, await apis.alone.post("/orders", content=body, headers=headers))
        assert fast.status_code == status, fast.text


async def test_a_buyer_reads_and_cancels_only_their_own_orders(apis: Apis) -> None:
    pid, owner, other = await apis.deal(), random_user(), random_user()
    placed = await apis.fast.post("/orders", json={"product_id": pid, "quantity": 1},
                                  headers=buyer_headers(owner))
    order_id = placed.json()["order_id"]
    seen = await apis.fast.get(f"/orders/{order_id}", headers=buyer_headers(other))
    cancel = await apis.fast.post(f"/orders/{order_id}/cancel", headers=buyer_headers(other))
    for refused in (seen, cancel):
        assert refused.status_code == 404, refused.text
        assert refused.json()["error"]["code"] == "order_not_found"
    mine = await apis.fast.get(f"/orders/{order_id}", headers=buyer_headers(owner))
    assert mine.status_code == 200 and mine.json()["status"] == "PENDING"
    async with apis.ctx.engine.connect() as conn:  # nobody asked the worker to cancel it
        asked = (await conn.execute(select(func.count()).select_from(outbox).where(
            outbox.c.key == order_id,
            outbox.c.event_type == "OrderCancellationRequested"))).scalar_one()
    assert asked == 0
    # The owner cancels with no body at all.
    cancelled = await apis.fast.post(f"/orders/{order_id}/cancel", headers=buyer_headers(owner))
    assert cancelled.status_code == 202, cancelled.text
