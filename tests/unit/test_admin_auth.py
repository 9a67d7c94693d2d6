"""The admin bearer check, pinned: the OpenAPI scheme declared on the admin routes checks
nothing itself; `require_admin` accepts exactly `<bearer, any case> <token>` and answers
our 401 for everything else. No services: an accepted token reaches the body validation."""

from __future__ import annotations

from types import SimpleNamespace

import httpx
import pytest
from fastapi import FastAPI

from hotdeal_core.settings import Settings
from order_api.app import create_app

TOKEN = "admin-token-for-this-test"


@pytest.fixture
def app() -> FastAPI:
    settings = Settings(_env_file=None, admin_token=TOKEN)
    app = create_app(settings)
    app.state.ctx = SimpleNamespace(settings=settings)  # no use case can run
    return app


async def start(app: FastAPI, headers: dict[str, str]) -> httpx.Response:
    transport = httpx.ASGITransport(app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        # No body: an accepted token gets the 422 of the body, a refused one the 401.
        return await client.post("/products/1/hotdeal/start", headers=headers)


@pytest.mark.parametrize("header", [
    None, "", "Bearer", "Bearer ", f"Basic {TOKEN}", "Bearer wrong-token",
    f"Bearer  {TOKEN}", f"Bearer {TOKEN} ", f"Token {TOKEN}", TOKEN,
])
async def test_anything_but_the_bearer_token_is_our_401(app: FastAPI, header: str | None
                                                       ) -> None:
    response = await start(app, {} if header is None else {"Authorization": header})
    assert response.status_code == 401, response.text
    assert response.json() == {"error": {"code": "unauthorized",
                                         "message": "a valid admin bearer token is required"}}


@pytest.mark.parametrize("scheme", ["Bearer", "bearer", "BEARER"])
async def test_the_token_under_any_case_of_bearer_passes(app: FastAPI, scheme: str) -> None:
    response = await start(app, {"Authorization": f"{scheme} {TOKEN}"})
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == "validation_error"
