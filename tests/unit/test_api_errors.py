"""The HTTP error translation (order_api/errors.py) and the edge's bounds, without services:
a dependency that refuses for a while is a 503 with Retry-After, a bad input is a 4xx."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from types import SimpleNamespace

import httpx
import pytest
from fastapi import FastAPI
from redis._parsers import BaseParser
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from hotdeal_core import signature
from hotdeal_core.db.engine import is_unavailable
from hotdeal_core.settings import Settings
from order_api.app import create_app
from order_api.errors import install_error_handlers

BEYOND_INT64 = 2**63


def _app_raising(exc: Exception) -> FastAPI:
    app = FastAPI()
    install_error_handlers(app)

    @app.get("/boom")
    async def boom() -> None:
        raise exc

    return app


async def _call(app: FastAPI, method: str, url: str, **kw: object) -> httpx.Response:
    transport = httpx.ASGITransport(app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        return await client.request(method, url, **kw)  # type: ignore[arg-type]


def _assert_unavailable(response: httpx.Response, dependency: str) -> None:
    assert response.status_code == 503, response.text
    assert response.json()["error"]["code"] == f"{dependency}_unavailable"
    assert response.headers["Retry-After"] == "1"


# Exactly as redis-py builds them from the server's reply (some become subclasses).
@pytest.mark.parametrize("reply", [
    "BUSY Redis is busy running a script. You can only call SCRIPT KILL or SHUTDOWN NOSAVE.",
    "OOM command not allowed when used memory > 'maxmemory'.",
    "READONLY You can't write against a read only replica.",
    "LOADING Redis is loading the dataset in memory",
    "MASTERDOWN Link with MASTER is down and replica-serve-stale-data is set to 'no'.",
    "CLUSTERDOWN The cluster is down",
    "TRYAGAIN Multiple keys request during rehashing of slot",
])
async def test_a_redis_that_refuses_for_a_while_is_a_503(reply: str) -> None:
    _assert_unavailable(await _call(_app_raising(BaseParser.parse_error(reply)), "GET", "/boom"),
                        "redis")


@pytest.mark.parametrize("reply", [
    "WRONGTYPE Operation against a key holding the wrong kind of value",
    "ERR user_script:1: Script attempted to access nonexistent global variable 'x'",
    "NOSCRIPT No matching script. Please use EVAL.",
])
async def test_any_other_redis_error_is_a_500(reply: str) -> None:
    response = await _call(_app_raising(BaseParser.parse_error(reply)), "GET", "/boom")
    assert response.status_code == 500
    assert response.json()["error"]["code"] == "internal_error"


class _DriverError(Exception):
    """What a Postgres driver's error carries: the SQLSTATE."""

    def __init__(self, sqlstate: str) -> None:
        super().__init__(f"sqlstate {sqlstate}")
        self.sqlstate = sqlstate


@pytest.mark.parametrize("sqlstate", [
    "57P03",  # cannot_connect_now: the database system is starting up
    "57P01",  # admin_shutdown
    "57P02",  # crash_shutdown
    "53300",  # too_many_connections
    "08006",  # connection_failure
    "08001",  # sqlclient_unable_to_establish_sqlconnection
])
async def test_a_postgres_that_cannot_serve_now_is_a_503(sqlstate: str) -> None:
    exc = DBAPIError("SELECT 1", None, _DriverError(sqlstate))
    assert is_unavailable(exc)
    _assert_unavailable(await _call(_app_raising(exc), "GET", "/boom"), "postgres")


@pytest.mark.parametrize("exc", [
    OperationalError("SELECT 1", None, _DriverError("")),
    DBAPIError("SELECT 1", None, _DriverError(""), connection_invalidated=True),
    PoolTimeoutError("QueuePool limit reached"),
])
async def test_a_lost_or_exhausted_connection_is_a_503(exc: Exception) -> None:
    assert is_unavailable(exc)
    _assert_unavailable(await _call(_app_raising(exc), "GET", "/boom"), "postgres")


@pytest.mark.parametrize("sqlstate", ["23505", "42P01", "22003", "40001", ""])
async def test_any_other_database_error_is_a_500(sqlstate: str) -> None:
    exc = DBAPIError("SELECT 1", None, _DriverError(sqlstate))
    assert not is_unavailable(exc)
    response = await _call(_app_raising(exc), "GET", "/boom")
    assert response.status_code == 500
    assert response.json()["error"]["code"] == "internal_error"


@pytest.fixture
async def edge() -> AsyncIterator[tuple[FastAPI, Settings]]:
    """The real app without its lifespan: its context has the settings and nothing else, so
    no use case can run and every request below must be refused before reaching one."""
    settings = Settings(_env_file=None)
    app = create_app(settings)
    app.state.ctx = SimpleNamespace(settings=settings)
    yield app, settings


def _admin(settings: Settings) -> dict[str, str]:
    return {"Authorization": f"Bearer {settings.admin_token.get_secret_value()}"}


@pytest.mark.parametrize("product_id", [BEYOND_INT64, 2**70, 0, -1])
async def test_an_order_for_a_product_id_outside_int64_ids_is_refused(
        edge: tuple[FastAPI, Settings], product_id: int) -> None:
    app, _ = edge
    response = await _call(app, "POST", "/orders",
                           json={"product_id": product_id, "user_id": "u-1", "quantity": 1})
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == "validation_error"


@pytest.mark.parametrize("product_id", [BEYOND_INT64, 2**70, 0, -1])
@pytest.mark.parametrize(("method", "template", "body"), [
    ("GET", "/products/{}", None),
    ("POST", "/products/{}/hotdeal/start", {"stock": 1}),
    ("POST", "/products/{}/hotdeal/end", None),
])
async def test_a_product_id_path_outside_int64_ids_is_refused(
        edge: tuple[FastAPI, Settings], product_id: int, method: str, template: str,
        body: dict[str, int] | None) -> None:
    app, settings = edge
    response = await _call(app, method, template.format(product_id), json=body,
                           headers=_admin(settings))
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == "validation_error"


@pytest.mark.parametrize("fields", [
    {"amount": BEYOND_INT64},
    {"payment_id": "pay\u0000ment"},  # Postgres text cannot hold NUL
])
async def test_a_signed_payment_the_database_cannot_hold_is_refused(
        edge: tuple[FastAPI, Settings], fields: dict[str, object]) -> None:
    app, settings = edge
    payment = {"payment_id": "pay-1", "order_id": "2b1d3c0e-7a4f-4b8e-9a51-5f0d2c6e8a11",
               "status": "succeeded", "amount": 100, **fields}
    raw = httpx.Request("POST", "/", json=payment).content
    header = signature.sign(settings.payment_webhook_secret.get_secret_value(),
                            int(time.time()), raw)
    response = await _call(app, "POST", "/payments/webhook", content=raw,
                           headers={"X-Payment-Signature": header})
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == "validation_error"
