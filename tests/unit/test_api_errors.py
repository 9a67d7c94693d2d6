"""The HTTP error translation (order_api/errors.py) and the edge's bounds, without services:
a dependency that refuses for a while is a 503 with Retry-After (the adapters raise it as
`DependencyUnavailable`, tests/unit/test_adapter_errors.py; the edge asks only
`is_retriable`), a bad input is a 4xx, anything else a 500."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from types import SimpleNamespace

import httpx
import pytest
from fastapi import FastAPI
from redis._parsers import BaseParser
from redis.exceptions import ConnectionError as RedisConnectionError
from sqlalchemy.exc import OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from hotdeal_core import signature
from hotdeal_core.errors import Conflict, DependencyUnavailable
from hotdeal_core.ports.orders import CommitUnknown
from hotdeal_core.settings import Settings
from hotdeal_core.stock.client import ReplicaAckTimeout
from order_api.app import create_app
from order_api.errors import install_error_handlers
from tests.buyers import buyer_headers

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


def _wrapped(outage: DependencyUnavailable) -> Exception:
    try:
        try:
            raise outage
        except DependencyUnavailable as exc:
            raise RuntimeError("flush failed") from exc
    except RuntimeError as wrapper:
        return wrapper


@pytest.mark.parametrize(("exc", "dependency"), [
    (DependencyUnavailable("redis"), "redis"), (DependencyUnavailable("postgres"), "postgres"),
    (ReplicaAckTimeout(100), "redis"), (CommitUnknown(), "postgres"),
    (_wrapped(DependencyUnavailable("redis")), "redis"),  # an outage under another error
], ids=["redis", "postgres", "replica-ack", "commit-unknown", "wrapped"])
async def test_a_dependency_that_cannot_serve_now_is_a_503_with_retry_after(
        exc: Exception, dependency: str) -> None:
    _assert_unavailable(await _call(_app_raising(exc), "GET", "/boom"), dependency)


@pytest.mark.parametrize("exc", [
    BaseParser.parse_error("WRONGTYPE Operation against a key holding the wrong kind of value"),
    BaseParser.parse_error("NOSCRIPT No matching script. Please use EVAL."),
    # Raw third-party errors: the edge does not judge them (their adapter does), so one
    # that reaches it unjudged is a bug in that adapter, and shows as one.
    RedisConnectionError("Error 111 connecting to 127.0.0.1:56379"),
    OperationalError("SELECT 1", None, Exception("")), PoolTimeoutError("QueuePool limit"),
    ConnectionRefusedError(111, "Connection refused"), ValueError("a bug"),
], ids=lambda e: type(e).__name__)
async def test_anything_else_is_a_500(exc: Exception) -> None:
    response = await _call(_app_raising(exc), "GET", "/boom")
    assert response.status_code == 500
    assert response.json()["error"]["code"] == "internal_error"


async def test_a_refusal_is_its_own_status_without_retry_after() -> None:
    response = await _call(_app_raising(Conflict("sold_out", "the product is sold out")),
                           "GET", "/boom")
    assert response.status_code == 409 and "Retry-After" not in response.headers
    assert response.json()["error"]["code"] == "sold_out"


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
    response = await _call(app, "POST", "/orders", headers=buyer_headers("u-1"),
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


@pytest.mark.parametrize("body", [b"\xc3\x28", b'{"user_id": "\xe9"}', b"[" * 3000 + b"]" * 3000,
                                  b"{not json"],
                         ids=["not-utf8", "latin1-text", "nested-too-deep", "not-json"])
@pytest.mark.parametrize("path", [
    "/orders", "/orders/2b1d3c0e-7a4f-4b8e-9a51-5f0d2c6e8a11/cancel",
    "/products/1/hotdeal/start"])
async def test_a_body_that_is_no_json_is_a_422_validation_error(
        edge: tuple[FastAPI, Settings], path: str, body: bytes) -> None:
    # What the OpenAPI document promises for invalid input (FastAPI alone answers 400 for
    # a body that is not UTF-8 or nests too deep).
    app, settings = edge
    who = buyer_headers("u-1") if path.startswith("/orders") else _admin(settings)
    response = await _call(app, "POST", path, content=body, headers={
        "Content-Type": "application/json", **who})
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == "validation_error"
