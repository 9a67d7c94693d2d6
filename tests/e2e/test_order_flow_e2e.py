"""Order -> payment -> settlement across the real processes (API, stock worker, Kafka)."""

from __future__ import annotations

import asyncio
import time
from uuid import uuid4

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import func, select

from hotdeal_core.db.tables import outbox
from hotdeal_core.usecases.context import Context
from tests.buyers import buyer_headers
from tests.e2e.conftest import (
    ADMIN,
    Stack,
    eventually,
    order_status,
    pay,
    signed,
    start_hot_deal,
)
from tests.random_refs import random_user


async def _order(client: httpx.AsyncClient, pid: int, user: str | None = None,
                 **headers: str) -> dict:
    user = user or random_user()
    resp = await client.post("/orders", json={"product_id": pid, "user_id": user, "quantity": 1},
                             headers=buyer_headers(user, **headers))
    assert resp.status_code == 202, resp.text
    return resp.json()


async def _remaining(client: httpx.AsyncClient, pid: int) -> int:
    return (await client.get(f"/products/{pid}")).json()["deal"]["remaining"]


async def test_order_then_successful_payment_is_confirmed(ctx: Context,
                                                          client: httpx.AsyncClient) -> None:
    pid = await start_hot_deal(ctx, client, 3)
    order = await _order(client, pid)
    assert order["status"] == "PENDING" and order["total"] == 1000
    resp = await pay(client, order)
    assert resp.status_code == 200 and resp.json()["outcome"] == "accepted"
    await order_status(client, order, "CONFIRMED")
    assert await _remaining(client, pid) == 2


async def test_failed_payment_cancels_and_puts_the_unit_back_on_sale(
        ctx: Context, client: httpx.AsyncClient) -> None:
    pid = await start_hot_deal(ctx, client, 1)
    order = await _order(client, pid)
    late = random_user()
    sold_out = await client.post("/orders", json={"product_id": pid, "user_id": late,
                                                  "quantity": 1}, headers=buyer_headers(late))
    assert sold_out.status_code == 409 and sold_out.json()["error"]["code"] == "sold_out"
    await pay(client, order, status="failed")
    cancelled = await order_status(client, order, "CANCELLED")
    assert cancelled["cancel_reason"] == "payment_failed"

    async def back_on_sale() -> bool:
        return await _remaining(client, pid) == 1
    await eventually(back_on_sale, what="the unit back on sale")

    async def bought() -> bool:  # the API's sold-out memo may refuse for up to 100 ms more
        resp = await client.post("/orders", json={"product_id": pid, "quantity": 1},
                                 headers=buyer_headers(random_user()))
        return resp.status_code == 202
    await eventually(bought, what="somebody else to buy the unit")


async def test_unpaid_reservation_expires_and_the_unit_goes_back(
        ctx: Context, client: httpx.AsyncClient, stack: Stack) -> None:
    pid = await start_hot_deal(ctx, client, 1)
    async with httpx.AsyncClient(base_url=stack.api_short_ttl.api_url) as short:
        order = await _order(short, pid)
    expired = await order_status(client, order, "CANCELLED", timeout=30)
    assert expired["cancel_reason"] == "expired"
    await _order(client, pid)
    # A payment arriving after the expiry is recorded, not lost (a refund is requested).
    assert (await pay(client, order)).status_code == 200


async def test_webhook_replay_changes_nothing_and_bad_signatures_are_refused(
        ctx: Context, client: httpx.AsyncClient) -> None:
    pid = await start_hot_deal(ctx, client, 2)
    order = await _order(client, pid)
    first = await pay(client, order, payment_id="pay-replay-" + order["order_id"])
    replay = await pay(client, order, payment_id="pay-replay-" + order["order_id"])
    assert first.json()["duplicate"] is False and replay.json()["duplicate"] is True
    # The same id with another status is a new fact, not a replay; a paid order stays sold.
    declined = await pay(client, order, status="failed",
                         payment_id="pay-replay-" + order["order_id"])
    assert declined.status_code == 200 and declined.json()["duplicate"] is False
    await order_status(client, order, "CONFIRMED")

    body = {"payment_id": f"p-{uuid4()}", "order_id": order["order_id"], "status": "failed",
            "amount": order["total"]}
    raw, headers = signed(body, secret="not-the-secret")
    wrong = await client.post("/payments/webhook", content=raw, headers=headers)
    raw, headers = signed(body, at=int(time.time()) - 301)
    stale = await client.post("/payments/webhook", content=raw, headers=headers)
    missing = await client.post("/payments/webhook", json=body)
    for resp in (wrong, stale, missing):
        assert resp.status_code == 401 and resp.json()["error"]["code"] == "bad_signature"
    raw, headers = signed({**body, "amount": order["total"] + 1})
    mismatch = await client.post("/payments/webhook", content=raw, headers=headers)
    # Acknowledged (the provider would retry a 4xx for days) and refunded: nothing is lost.
    assert mismatch.status_code == 200 and mismatch.json()["outcome"] == "amount_mismatch"
    assert (await client.get(f"/orders/{order['order_id']}", headers=buyer_headers(
        order["user_id"]))).json()["status"] == "CONFIRMED"


async def test_admin_confirm_and_buyer_cancel(ctx: Context, client: httpx.AsyncClient) -> None:
    pid = await start_hot_deal(ctx, client, 2)
    to_confirm, buyer = await _order(client, pid), random_user()
    to_cancel = await _order(client, pid, user=buyer)
    url = f"/orders/{to_confirm['order_id']}/confirm"
    assert (await client.post(url)).status_code == 401
    assert (await client.post(url, headers={"Authorization": "Bearer nope"})).status_code == 401
    ok = await client.post(url, headers={"Authorization": f"Bearer {ADMIN}"})
    assert ok.status_code == 202
    cancel_url = f"/orders/{to_cancel['order_id']}/cancel"
    assert (await client.post(cancel_url)).status_code == 401  # no buyer token
    assert (await client.post(cancel_url, headers=buyer_headers("someone-else"))
            ).status_code == 404  # another buyer's order
    assert (await client.post(cancel_url, json={"user_id": "someone-else"},
                              headers=buyer_headers(buyer))).status_code == 403
    assert (await client.post(cancel_url, headers=buyer_headers(buyer))).status_code == 202
    await order_status(client, to_confirm, "CONFIRMED")
    cancelled = await order_status(client, to_cancel, "CANCELLED")
    assert cancelled["cancel_reason"] == "user_cancelled"


async def test_idempotency_key_returns_the_first_answer(ctx: Context,
                                                        client: httpx.AsyncClient) -> None:
    pid = await start_hot_deal(ctx, client, 5, limit=5)
    user = random_user()
    first = await _order(client, pid, user=user, **{"Idempotency-Key": "click-1"})
    again = await _order(client, pid, user=user, **{"Idempotency-Key": "click-1"})
    assert again == first
    assert await _remaining(client, pid) == 4


@pytest.mark.parametrize("body", [
    {"product_id": 1, "user_id": "u"},
    {"product_id": 1, "user_id": "u", "quantity": 0},
    {"product_id": 1, "user_id": "u", "quantity": 101},
    {"product_id": "1", "user_id": "u", "quantity": 1},
    {"product_id": 1, "user_id": "u", "quantity": 1, "coupon": "FREE"},
    {"product_id": 1, "user_id": "", "quantity": 1},
])
async def test_invalid_order_bodies_are_422_with_an_error_code(client: httpx.AsyncClient,
                                                               body: dict) -> None:
    resp = await client.post("/orders", json=body, headers=buyer_headers("u"))
    assert resp.status_code == 422 and resp.json()["error"]["code"] == "validation_error"


async def test_unknown_things_are_404_and_bad_ids_422(client: httpx.AsyncClient) -> None:
    as_u = buyer_headers("u")
    missing = await client.post("/orders", json={"product_id": 10**12, "user_id": "u",
                                                 "quantity": 1}, headers=as_u)
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "product_not_found"
    assert (await client.get(f"/orders/{uuid4()}", headers=as_u)).status_code == 404
    assert (await client.get("/orders/not-a-uuid", headers=as_u)).status_code == 422
    broken = await client.post("/orders", content=b"{not json",
                               headers={**as_u, "Content-Type": "application/json"})
    assert broken.status_code == 422


async def _accepted_of_1000(url: str, pid: int) -> tuple[int, dict[int, int]]:
    limits = httpx.Limits(max_connections=1000, max_keepalive_connections=1000)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=120) as c:
        headers = [buyer_headers(f"crowd-{i}-{pid}") for i in range(1000)]

        async def buy(i: int) -> int:
            resp = await c.post("/orders", json={"product_id": pid, "quantity": 1},
                                headers=headers[i])
            return resp.status_code
        codes = await asyncio.gather(*(buy(i) for i in range(1000)))
    return codes.count(202), {code: codes.count(code) for code in set(codes)}


@pytest.mark.timeout(300)
@pytest.mark.parametrize("mode", ["redis", "db"])
async def test_1000_concurrent_buyers_on_100_units_get_exactly_100(
        ctx: Context, stack: Stack, mode: str) -> None:
    api = stack.api if mode == "redis" else stack.api_db
    async with httpx.AsyncClient(base_url=api.api_url) as admin:
        pid = await start_hot_deal(ctx, admin, 100)
        deal = (await admin.get(f"/products/{pid}")).json()["deal"]
    assert deal["stock_backend"] == mode
    accepted, codes = await _accepted_of_1000(api.api_url, pid)
    assert accepted == 100, codes
    assert codes == {202: 100, 409: 900}


async def test_every_outbox_row_gets_published(ctx: Context, client: httpx.AsyncClient) -> None:
    pid = await start_hot_deal(ctx, client, 3)
    orders = [await _order(client, pid) for _ in range(3)]
    await pay(client, orders[0])
    await order_status(client, orders[0], "CONFIRMED")

    # This test's rows (keyed by its orders and its product): other tests leave rows set
    # aside on purpose (tests/integration/test_retention.py, test_outbox_poison.py).
    keys = [str(order["order_id"]) for order in orders] + [str(pid)]

    async def all_published() -> bool:
        async with ctx.engine.connect() as conn:
            left = (await conn.execute(select(func.count()).select_from(outbox).where(
                outbox.c.published_at.is_(None), outbox.c.key.in_(keys)))).scalar_one()
        return left == 0
    await eventually(all_published, what="the outbox to drain")


async def test_metrics_export_the_publish_delay_and_the_deal_audit(
        ctx: Context, client: httpx.AsyncClient) -> None:
    pid = await start_hot_deal(ctx, client, 3)
    await _order(client, pid)
    text = (await client.get("/metrics")).text
    assert "hotdeal_outbox_publish_delay_seconds_bucket" in text
    samples = {(s.name, s.labels.get("term")): s.value
               for family in text_string_to_metric_families(text) for s in family.samples
               if s.labels.get("product") == str(pid)}
    assert samples[("hotdeal_deal_units", "pending")] == 1, samples
    assert samples[("hotdeal_deal_audit_balanced", None)] == 1, samples
