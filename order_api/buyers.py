"""Who the buyer is: the one check of a buyer route's bearer token, made before the body is
read, by the fast path and FastAPI's buyer routes alike (docs/architecture.md)."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Annotated, Any

from fastapi import Depends, Request, Response, Security
from fastapi.security import HTTPBearer
from starlette.datastructures import State
from starlette.types import Scope

from hotdeal_core.errors import Forbidden
from hotdeal_core.identity import BuyerTokens, InvalidToken, bearer_token
from order_api.errors import JsonBodyRoute

# Where the buyer of a request is kept once known (the fast path hands it on to FastAPI).
BUYER = "hotdeal.buyer"


def authenticate(state: State, scope: Scope) -> str:
    """The buyer id (the token's `sub`) of a request, or InvalidToken / ExpiredToken.
    The verifier is the one `create_app` built for this process (its cache is shared)."""
    buyer: str | None = scope.get(BUYER)
    if buyer is not None:
        return buyer
    authorization = None
    for name, value in scope["headers"]:
        if name == b"authorization":
            if authorization is not None:  # two tokens: which one is the buyer's?
                raise InvalidToken("a request carries one Authorization header")
            authorization = value.decode("latin-1")
    tokens: BuyerTokens = state.buyer_tokens
    buyer = tokens.buyer(bearer_token(authorization))
    scope[BUYER] = buyer
    return buyer


def claimed(buyer: str, user_id: str | None) -> str:
    """The buyer, if a body's `user_id` (optional, the old contract) names the same one."""
    if user_id is not None and user_id != buyer:
        raise Forbidden("buyer_mismatch", "the body's user_id is not the token's buyer")
    return buyer


class _BuyerBearer(HTTPBearer):
    """Declares the buyer routes' bearer scheme in the OpenAPI document; it checks nothing
    itself, `BuyerRoute` does (and answers our 401, not FastAPI's)."""

    async def __call__(self, request: Request) -> None:  # type: ignore[override]
        return None


BUYER_BEARER = _BuyerBearer(scheme_name="buyerBearer", auto_error=False,
                            description="a buyer JWT from the shop's identity provider, as "
                                        "`Authorization: Bearer <JWT>`; its `sub` is the "
                                        "buyer id")


async def current_buyer(request: Request,
                        _: Annotated[None, Security(BUYER_BEARER)] = None) -> str:
    """The route's buyer: already checked by `BuyerRoute` before the body was read."""
    return authenticate(request.app.state, request.scope)


Buyer = Annotated[str, Depends(current_buyer)]


class BuyerRoute(JsonBodyRoute):
    """A route of a buyer: its token is checked before its body is read or validated, the
    order the fast path answers in (a 401 comes before any 422)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handle = super().get_route_handler()

        async def authenticated(request: Request) -> Response:
            authenticate(request.app.state, request.scope)
            return await handle(request)
        return authenticated
