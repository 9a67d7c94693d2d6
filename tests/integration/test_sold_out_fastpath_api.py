"""The sold-out fast path in the real app (create_app, its lifespan, Postgres and Redis): a
memo'd product is refused without routing, with the route's very bytes; a keyed retry of the
last unit still gets its order; a bad body gets the same 422 as without the memo."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest
from asgi_lifespan import LifespanManager
from fastapi import FastAPI, Request

from hotdeal_core.settings import Settings
from hotdeal_core.stock.sold_out import SoldOutMemo
from hotdeal_core.usecases import deals, products
from hotdeal_core.usecases.context import Context
from order_api.app import create_app
from order_api.routes import ctx_of
from tests.buyers import buyer_headers
from tests.random_refs import random_name, random_user


@dataclass
class Api:
    app: FastAPI
    client: httpx.AsyncClient
    routed: list[str]  # one entry each time a route resolved its Context dependency

    @property
    def ctx(self) -> Context:
        ctx: Context = self.app.state.ctx
        return ctx

    async def sold_out_deal(self) -> int:
        """A product whose 1-unit deal is sold out (and memo'd by the route's refusal)."""
        product = await products.create_product(self.ctx, random_name("fast"), 1000, 1)
        await deals.start_deal(self.ctx, deals.StartDeal(product.id, 1, 1, 3600))
        return product.id

    async def order(self, product_id: int, user: str | None = None,
                    key: str | None = None) -> httpx.Response:
        user = user or random_user()
        headers = buyer_headers(user, **({"Idempotency-Key": key} if key is not None else {}))
        return await self.client.post("/orders", headers=headers, json={
            "product_id": product_id, "user_id": user, "quantity": 1})


@pytest.fixture(scope="module")
async def api() -> AsyncIterator[Api]:
    # A memo window longer than the test: a refusal must not depend on timing.
    app = create_app(Settings(_env_file=None, sold_out_cache_ms=3_600_000))
    routed: list[str] = []

    async def counting_ctx(request: Request) -> Context:
        routed.append(request.url.path)
        return await ctx_of(request)
    app.dependency_overrides[ctx_of] = counting_ctx
    async with LifespanManager(app, startup_timeout=30, shutdown_timeout=30), \
            httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://test") as client:
        yield Api(app, client, routed)
    await app.state.resources.redis.connection_pool.aclose()


async def test_a_memod_product_is_refused_before_routing_with_the_routes_bytes(
        api: Api) -> None:
    pid = await api.sold_out_deal()
    assert (await api.order(pid)).status_code == 202  # the last unit
    api.routed.clear()
    by_route = await _through_fastapi(api, pid, random_user())  # the route refuses: memo armed
    assert by_route.status_code == 409 and api.routed == ["/orders"]
    assert api.ctx.sold_out.sold_out(pid)
    api.routed.clear()
    by_fast_path = await api.order(pid)
    assert api.routed == []  # answered before FastAPI resolved anything
    assert by_fast_path.status_code == 409
    assert by_fast_path.content == by_route.content
    assert by_fast_path.headers.multi_items() == by_route.headers.multi_items()
    assert by_fast_path.json() == {"error": {"code": "sold_out",
                                             "message": "the product is sold out"}}


async def test_a_keyed_retry_of_the_last_unit_gets_its_order_not_sold_out(api: Api) -> None:
    pid = await api.sold_out_deal()
    buyer = random_user()
    first = await api.order(pid, buyer, key="k-last")
    assert first.status_code == 202
    assert (await api.order(pid)).status_code == 409  # arms the memo
    assert api.ctx.sold_out.sold_out(pid)
    api.routed.clear()
    retry = await api.order(pid, buyer, key="k-last")
    assert retry.status_code == 202, retry.text
    assert retry.json()["order_id"] == first.json()["order_id"]
    # A new key on the sold-out deal holds no reservation: refused from the memo.
    other = await api.order(pid, key="k-other")
    assert other.status_code == 409 and other.json()["error"]["code"] == "sold_out"
    assert api.routed == []  # both answered by the fast path


@pytest.mark.parametrize(("content", "content_type"), [
    (b'{"product_id": PID, "user_id": "u-1", "quantity": 0}', "application/json"),
    (b'{"product_id": PID, "user_id": "u-1", "quantity": "1"}', "application/json"),
    (b'{"product_id": PID, "user_id": "u 1", "quantity": 1}', "application/json"),
    (b'{"product_id": PID, "user_id": "u-1", "quantity": 1, "x": 1}', "application/json"),
    (b'{"product_id": PID, "user_id": "u-1"}', "application/json"),
    (b'{"product_id": PID, "user_id": "u-1", "quantity": 1', "application/json"),
    (b'{"product_id": PID, "user_id": "u-1", "quantity": 1}', "text/plain"),
    (b'{"product_id": PID, "user_id": "u-1", "quantity": 1}', None),
    (b"", "application/json"),
])
async def test_a_bad_body_gets_the_same_answer_as_without_the_memo(
        api: Api, content: bytes, content_type: str | None) -> None:
    pid = await api.sold_out_deal()
    body = content.replace(b"PID", str(pid).encode())
    headers = buyer_headers("u-1", **({"Content-Type": content_type} if content_type else {}))

    async def send() -> httpx.Response:
        request = api.client.build_request("POST", "/orders", content=body, headers=headers)
        if content_type is None:
            request.headers.pop("Content-Type", None)
        return await api.client.send(request)
    api.ctx.sold_out.remember(pid)
    with_memo = await send()
    api.ctx.sold_out = SoldOutMemo(3600)  # nothing memo'd: the plain FastAPI path
    without_memo = await send()
    assert with_memo.status_code == without_memo.status_code == 422, with_memo.text
    assert with_memo.content == without_memo.content


async def _through_fastapi(api: Api, product_id: int, user: str) -> httpx.Response:
    """The same order through FastAPI's route: a JSON media type the fast path leaves alone
    (FastAPI parses any +json body as JSON)."""
    body = json.dumps({"product_id": product_id, "user_id": user, "quantity": 1})
    return await api.client.post("/orders", content=body, headers=buyer_headers(
        user, **{"Content-Type": "application/vnd.hotdeal+json"}))


async def test_an_order_is_placed_without_fastapi_with_the_routes_answer(api: Api) -> None:
    product = await products.create_product(api.ctx, random_name("fast"), 1000, 5)
    await deals.start_deal(api.ctx, deals.StartDeal(product.id, 5, 1, 3600))
    api.routed.clear()
    fast = await api.order(product.id)
    assert fast.status_code == 202 and api.routed == []
    routed = await _through_fastapi(api, product.id, random_user())
    assert routed.status_code == 202 and api.routed == ["/orders"]
    assert [k for k, _ in fast.headers.multi_items()] == \
        [k for k, _ in routed.headers.multi_items()]
    a, b = fast.json(), routed.json()
    assert a.keys() == b.keys() and {k: type(v) for k, v in a.items()} == \
        {k: type(v) for k, v in b.items()}
    same = ("status", "product_id", "hot_deal_id", "quantity", "unit_price", "total")
    assert [a[k] for k in same] == [b[k] for k in same]


async def test_the_fast_paths_refusals_are_the_routes_bytes(api: Api) -> None:
    product = await products.create_product(api.ctx, random_name("fast"), 1000, 5)
    await deals.start_deal(api.ctx, deals.StartDeal(product.id, 5, 1, 3600))
    buyer = random_user()
    assert (await api.order(product.id, buyer)).status_code == 202
    for pid in (product.id, 2**62 + 17):  # limit_exceeded; product_not_found
        fast, routed = await api.order(pid, buyer), await _through_fastapi(api, pid, buyer)
        assert fast.status_code == routed.status_code in (409, 404)
        assert fast.content == routed.content
        assert fast.headers.multi_items() == routed.headers.multi_items()
