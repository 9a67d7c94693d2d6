"""Kafka down: the order API stays ready (Kafka is reported, not required), orders and
payments are still accepted, their events wait in the outbox, claimed by this process."""

from __future__ import annotations

import time

import httpx
from asgi_lifespan import LifespanManager
from sqlalchemy import select

from hotdeal_core.db.tables import outbox
from hotdeal_core.settings import Settings
from hotdeal_core.signature import sign
from hotdeal_core.usecases.context import Context
from hotdeal_core.usecases.deals import StartDeal, start_deal
from order_api.app import create_app
from tests.buyers import buyer_headers
from tests.conftest import ProductFactory
from tests.random_refs import random_user


async def test_without_kafka_the_api_is_ready_and_takes_orders_and_payments(
        settings: Settings, ctx: Context, new_product: ProductFactory) -> None:
    pid = await new_product(stock=5, price=700)
    await start_deal(ctx, StartDeal(pid, 5, 1))
    no_kafka = settings.model_copy(update={"kafka_bootstrap_servers": "127.0.0.1:1"})
    app = create_app(no_kafka)
    async with LifespanManager(app, startup_timeout=30, shutdown_timeout=30), \
            httpx.AsyncClient(transport=httpx.ASGITransport(app),
                              base_url="http://test") as client:
        ready = await client.get("/readyz")
        metrics = (await client.get("/metrics")).text
        buyer = random_user()
        order = await client.post("/orders", json={"product_id": pid, "user_id": buyer,
                                                   "quantity": 1}, headers=buyer_headers(buyer))
        body = (b'{"payment_id":"p-%s","order_id":"%s","status":"succeeded","amount":700}'
                % (random_user().encode(), order.json()["order_id"].encode()))
        secret = settings.payment_webhook_secret.get_secret_value()
        paid = await client.post("/payments/webhook", content=body, headers={
            "X-Payment-Signature": sign(secret, int(time.time()), body),
            "Content-Type": "application/json"})
    await app.state.resources.redis.connection_pool.aclose()
    assert ready.status_code == 200, ready.text
    assert ready.json()["checks"]["kafka"].startswith("unavailable")
    assert "hotdeal_kafka_connected 0.0" in metrics.splitlines()
    assert order.status_code == 202 and paid.status_code == 200, (order.text, paid.text)
    async with ctx.engine.connect() as conn:
        events = (await conn.execute(select(outbox.c.event_type, outbox.c.published_at).where(
            outbox.c.key == order.json()["order_id"]))).all()
    assert sorted(e.event_type for e in events) == ["OrderPlaced", "PaymentSucceeded"]
    assert all(e.published_at is None for e in events)  # waiting for Kafka in the outbox
