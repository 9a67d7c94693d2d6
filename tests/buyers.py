"""Buyer tokens for tests: `buyer_headers(user)` is the `Authorization` header a buyer's
requests carry (signed with the test settings' development key)."""

from __future__ import annotations

from functools import lru_cache

from fastapi import FastAPI

from hotdeal_core.identity import TokenMinter
from hotdeal_core.settings import Settings
from order_api.fastpath import SoldOutFastPath


@lru_cache(maxsize=1)
def minter() -> TokenMinter:
    return TokenMinter(Settings(_env_file=None))


def buyer_token(user_id: str) -> str:
    return minter().token(user_id)


def buyer_headers(user_id: str, **headers: str) -> dict[str, str]:
    """`{"Authorization": "Bearer <token of user_id>"}` and any other `headers`."""
    return {"Authorization": f"Bearer {buyer_token(user_id)}", **headers}


def without_fast_path(app: FastAPI) -> FastAPI:
    """`app` answering through FastAPI alone (before its first request builds the stack)."""
    app.user_middleware = [m for m in app.user_middleware
                           if getattr(m, "cls", None) is not SoldOutFastPath]
    return app
