"""A Postgres that is starting up refuses every connection with SQLSTATE 57P03: an order
then answers 503 postgres_unavailable with Retry-After, and its Redis reservation is given
back (real Redis; a fake Postgres that speaks just enough of the wire protocol)."""

from __future__ import annotations

import asyncio
import random
import struct
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
from asgi_lifespan import LifespanManager
from redis.asyncio import Redis

from hotdeal_core.settings import Settings
from hotdeal_core.stock.redis_store import RedisStockStore, deal_keys
from order_api.app import create_app
from tests.buyers import buyer_headers
from tests.random_refs import random_user

SSL_REQUEST = 80877103


def _error_response(**fields: str) -> bytes:
    payload = b"".join(k.encode() + v.encode() + b"\0" for k, v in fields.items()) + b"\0"
    return b"E" + struct.pack("!i", 4 + len(payload)) + payload


STARTING_UP = _error_response(S="FATAL", V="FATAL", C="57P03",
                              M="the database system is starting up")


class StartingPostgres:
    """Answers an SSLRequest with "N", reads the startup message, refuses it like a server
    still starting, and hangs up. `refused` counts the refusals."""

    def __init__(self) -> None:
        self.refused = 0

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            length, code = struct.unpack("!ii", await reader.readexactly(8))
            if code == SSL_REQUEST:
                writer.write(b"N")
                await writer.drain()
                (length,) = struct.unpack("!i", await reader.readexactly(4))
                await reader.readexactly(length - 4)
            else:  # the startup message itself: its first 8 bytes are read already
                await reader.readexactly(length - 8)
            writer.write(STARTING_UP)
            await writer.drain()
            self.refused += 1
        except (asyncio.IncompleteReadError, ConnectionError):
            pass  # the client gave up first
        finally:
            writer.close()
            await writer.wait_closed()


@pytest.fixture
async def starting_postgres() -> AsyncIterator[tuple[StartingPostgres, int]]:
    fake = StartingPostgres()
    server = await asyncio.start_server(fake.serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        yield fake, port


async def test_an_order_while_postgres_starts_up_is_a_503_and_frees_its_stock(
        starting_postgres: tuple[StartingPostgres, int], settings: Settings,
        redis: Redis) -> None:
    fake, port = starting_postgres
    app_settings = settings.model_copy(update={
        "database_url": f"postgresql+asyncpg://hotdeal:hotdeal@127.0.0.1:{port}/hotdeal_test"})
    product_id, deal_id = random.randrange(2**40, 2**50), random.randrange(2**40, 2**50)
    stock = RedisStockStore(redis)
    assert await stock.open(product_id, deal_id, 5, 2, 1, 990)
    try:
        app = create_app(app_settings)
        async with LifespanManager(app, startup_timeout=30, shutdown_timeout=30), \
                httpx.AsyncClient(transport=httpx.ASGITransport(app),
                                  base_url="http://test") as client:
            buyer = random_user()
            response = await client.post(
                "/orders", json={"product_id": product_id, "user_id": buyer, "quantity": 2},
                headers=buyer_headers(buyer, **{"Idempotency-Key": uuid.uuid4().hex}))
        # open_resources closes its Redis client but not the pool it was given (redis-py
        # closes only a pool it made itself): close it, or its sockets outlive the loop.
        await app.state.resources.redis.connection_pool.aclose()
        assert fake.refused >= 1  # the app did talk to the refusing "Postgres"
        assert response.status_code == 503, response.text
        assert response.json()["error"]["code"] == "postgres_unavailable"
        assert response.headers["Retry-After"] == "1"
        # The reservation was given back before answering.
        _, units, users, reservations = deal_keys(product_id)[:4]
        assert await redis.get(units) == b"5"
        assert await redis.hlen(reservations) == 0
        assert await redis.hlen(users) == 0
    finally:
        await redis.delete(*deal_keys(product_id))
