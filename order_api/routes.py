"""HTTP routes: parse, call one use case, map the outcome. No business rules here."""

from __future__ import annotations

import hmac
import time
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Depends, Header, Path, Request, Response, Security
from fastapi.responses import JSONResponse, PlainTextResponse
from fastapi.security import HTTPBearer
from pydantic import ValidationError

from hotdeal_core import signature
from hotdeal_core.bootstrap.resources import Resources
from hotdeal_core.errors import Unauthorized
from hotdeal_core.observability import tracing
from hotdeal_core.usecases import deals, orders, payments, products
from hotdeal_core.usecases.context import Context
from order_api.buyers import Buyer, BuyerRoute, claimed
from order_api.errors import BEARER_REFUSALS, JsonBodyRoute, declared, error_response
from order_api.limits import order_limits
from order_api.observe import metrics_response
from order_api.responses import order_response
from schemas.http import (
    BIGINT_LIMIT,
    IDEMPOTENCY_KEY_MAX,
    IDEMPOTENCY_KEY_PATTERN,
    CancelOrderRequest,
    EndDealResponse,
    ErrorResponse,
    OrderResponse,
    PaymentWebhookRequest,
    PaymentWebhookResponse,
    PlaceOrderRequest,
    ProductResponse,
    StartDealRequest,
    StartDealResponse,
)

router = APIRouter(route_class=JsonBodyRoute)
_INVALID = ("validation_error",)
# A buyer route: the token is checked before the body (order_api/buyers.py).
_BUYER: dict[str, Any] = {"route_class_override": BuyerRoute}


def _errors(**by_status: tuple[str, ...]) -> dict[int | str, dict[str, Any]]:
    """A route's documented errors, e.g. `_errors(e404=("order_not_found",))`."""
    return declared({int(k[1:]): v for k, v in by_status.items()}, ErrorResponse)


class _AdminBearer(HTTPBearer):
    """Declares the admin routes' bearer scheme in the OpenAPI document; it checks nothing
    itself, `require_admin` does (and answers our 401, not FastAPI's)."""

    async def __call__(self, request: Request) -> None:  # type: ignore[override]
        return None


ADMIN_BEARER = _AdminBearer(scheme_name="adminBearer", auto_error=False,
                            description="ADMIN_TOKEN, as `Authorization: Bearer <token>`")


# Dependencies are `async def` on purpose: FastAPI runs a plain `def` dependency in a
# worker thread, a thread hop on every request (measured: ~4 per request).
async def ctx_of(request: Request) -> Context:
    ctx: Context = request.app.state.ctx
    return ctx


Ctx = Annotated[Context, Depends(ctx_of)]
# A BIGINT id: out of that range it cannot exist (and asyncpg cannot even send it).
ProductIdPath = Annotated[int, Path(ge=1, lt=BIGINT_LIMIT)]


async def require_admin(request: Request,
                        # ADMIN_BEARER documents this header; not a second time as a parameter
                        authorization: Annotated[str | None, Header(
                            include_in_schema=False)] = None,
                        _: Annotated[None, Security(ADMIN_BEARER)] = None) -> None:
    token = request.app.state.settings.admin_token.get_secret_value().encode()
    scheme, _sep, given = (authorization or "").partition(" ")
    # An empty token (configured or given) never passes.
    if scheme.lower() != "bearer" or not given or not token or \
            not hmac.compare_digest(given.encode("utf-8", "surrogateescape"), token):
        raise Unauthorized("unauthorized", "a valid admin bearer token is required")


async def place_order(request: Request, body: PlaceOrderRequest, ctx: Ctx, buyer: Buyer,
                      idempotency_key: Annotated[str | None, Header(
                          min_length=1, max_length=IDEMPOTENCY_KEY_MAX,
                          pattern=IDEMPOTENCY_KEY_PATTERN)] = None,
                      ) -> OrderResponse:
    """Reserve stock and create a PENDING order for the token's buyer."""
    # order_api/fastpath.py answers most of these before FastAPI, with the same bytes.
    buyer = claimed(buyer, body.user_id)
    # RATE LIMIT (buyer): the one call on this path, as the fast path makes it (per address:
    # fastpath.py, for every POST /orders).
    order_limits(request.app.state).check_buyer(buyer)
    order = await orders.place_order(ctx, orders.PlaceOrder(
        body.product_id, buyer, body.quantity, idempotency_key))
    return order_response(order)


router.add_api_route(
    "/orders", place_order, methods=["POST"], status_code=202, response_model=OrderResponse,
    responses=_errors(e401=BEARER_REFUSALS, e403=("buyer_mismatch",),
                      e404=("product_not_found",), e422=_INVALID, e429=("rate_limited",),
                      e409=("sold_out", "limit_exceeded", "deal_not_active",
                            "idempotency_in_progress", "already_entered")),
    tags=["orders"], **_BUYER)


async def get_order(order_id: UUID, ctx: Ctx, buyer: Buyer) -> OrderResponse:
    """The buyer's own order (anyone else's is `order_not_found`)."""
    return order_response(await orders.get_order(ctx, order_id, buyer))


router.add_api_route("/orders/{order_id}", get_order, methods=["GET"], tags=["orders"],
                     response_model=OrderResponse, responses=_errors(
                         e401=BEARER_REFUSALS, e404=("order_not_found",), e422=_INVALID),
                     **_BUYER)


@router.post("/orders/{order_id}/confirm", status_code=202, response_model=OrderResponse,
             responses=_errors(e401=("unauthorized",), e404=("order_not_found",),
                               e409=("invalid_state",), e422=_INVALID),
             dependencies=[Depends(require_admin)], tags=["orders"])
async def confirm_order(order_id: UUID, ctx: Ctx) -> OrderResponse:
    """Confirm without a payment callback (trusted callers). The stock worker applies it."""
    return order_response(await orders.request_confirmation(ctx, order_id))


async def cancel_order(order_id: UUID, ctx: Ctx, buyer: Buyer,
                       body: CancelOrderRequest | None = None) -> OrderResponse:
    """The buyer cancels their PENDING order (the body is optional). The stock worker
    applies it and frees the stock."""
    user_id = None if body is None else body.user_id
    return order_response(await orders.request_cancellation(ctx, order_id,
                                                            claimed(buyer, user_id)))


router.add_api_route(
    "/orders/{order_id}/cancel", cancel_order, methods=["POST"], status_code=202,
    response_model=OrderResponse, responses=_errors(
        e401=BEARER_REFUSALS, e403=("buyer_mismatch",), e404=("order_not_found",),
        e409=("invalid_state",), e422=_INVALID), tags=["orders"], **_BUYER)


# The webhook reads its body itself (the signature covers the raw bytes): its model is
# declared here, or the document would show a route without a body.
_WEBHOOK_BODY = {"requestBody": {"required": True, "content": {"application/json": {
    "schema": PaymentWebhookRequest.model_json_schema()}}}}


@router.post("/payments/webhook", response_model=PaymentWebhookResponse, responses=_errors(
    e401=("bad_signature",), e422=("validation_error",)), openapi_extra=_WEBHOOK_BODY,
             tags=["payments"])
async def payment_webhook(request: Request, ctx: Ctx,
                          x_payment_signature: Annotated[str | None, Header()] = None,
                          ) -> PaymentWebhookResponse | JSONResponse:
    """The payment provider's callback, signed with PAYMENT_WEBHOOK_SECRET. Every signed,
    well-formed callback is recorded and acknowledged (`outcome`: accepted, amount_mismatch or
    order_not_found; a success of the last two is refunded); `duplicate`: a replay."""
    raw = await request.body()
    secret = ctx.settings.payment_webhook_secret.get_secret_value()
    signature.verify(secret, x_payment_signature, raw, time.time(),
                     ctx.settings.webhook_tolerance_seconds)
    try:
        body = PaymentWebhookRequest.model_validate_json(raw)
    except ValidationError as exc:
        details = [{"loc": list(e["loc"]), "type": e["type"], "msg": e["msg"]}
                   for e in exc.errors()]
        return error_response(422, "validation_error", "the request is invalid", details)
    receipt = await payments.record_payment(ctx, payments.PaymentCallback(
        body.payment_id, body.order_id, body.status, body.amount, tracing.headers()))
    return PaymentWebhookResponse(payment_id=receipt.payment_id, outcome=receipt.outcome,
                                  duplicate=receipt.duplicate)


@router.get("/products/{product_id}", response_model=ProductResponse, tags=["products"],
            responses=_errors(e404=("product_not_found",), e422=_INVALID))
async def get_product(product_id: ProductIdPath, ctx: Ctx) -> ProductResponse:
    p = await products.get_product(ctx, product_id)
    deal = None
    if p.deal is not None:
        deal = {"hot_deal_id": p.deal.id, "status": p.deal.status,
                "stock_backend": p.deal.stock_backend, "initial_stock": p.deal.initial_stock,
                "per_user_limit": p.deal.per_user_limit, "remaining": p.deal.remaining,
                "epoch": p.deal.epoch, "ends_at": p.deal.ends_at}
    return ProductResponse.model_validate({"product_id": p.id, "name": p.name, "price": p.price,
                                           "stock": p.stock, "deal": deal})


@router.post("/products/{product_id}/hotdeal/start", status_code=201, tags=["deals"],
             response_model=StartDealResponse, responses=_errors(
                 e401=("unauthorized",), e404=("product_not_found",),
                 e409=("deal_already_active", "insufficient_stock"), e422=_INVALID),
             dependencies=[Depends(require_admin)])
async def start_hotdeal(product_id: ProductIdPath, body: StartDealRequest,
                        ctx: Ctx) -> StartDealResponse:
    started = await deals.start_deal(ctx, deals.StartDeal(
        product_id, body.stock, body.per_user_limit, body.duration_seconds,
        deals.opening_window(ctx.settings, body.opening_window_seconds)))
    return StartDealResponse(hot_deal_id=started.deal_id, product_id=started.product_id,
                             stock=started.stock, per_user_limit=started.per_user_limit,
                             stock_backend=started.stock_backend, ends_at=started.ends_at,
                             opening_window_seconds=started.opening_window_seconds)


@router.post("/products/{product_id}/hotdeal/end", response_model=EndDealResponse,
             tags=["deals"],
             responses=_errors(e401=("unauthorized",), e404=("deal_not_found",),
                               e422=_INVALID),
             dependencies=[Depends(require_admin)])
async def end_hotdeal(product_id: ProductIdPath, ctx: Ctx) -> EndDealResponse:
    """Stop intake at once; the reconciler flushes the deal's stock back to Postgres."""
    deal_id, ended_now = await deals.end_deal(ctx, product_id)
    return EndDealResponse(hot_deal_id=deal_id, product_id=product_id, ended_now=ended_now)


@router.get("/healthz", tags=["operations"])
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", tags=["operations"], responses={503: {
    "description": "Postgres or Redis does not answer (the body says which); Retry-After",
    "headers": {"Retry-After": {"schema": {"type": "integer"}}}}})
async def readyz(request: Request, response: Response) -> dict[str, object]:
    resources: Resources = request.app.state.resources
    checks = await resources.readiness()
    # Kafka is reported, not required: while it is down orders are still taken (their
    # events wait in the outbox), so a load balancer must keep sending buyers here.
    ready = all(checks[name] == "ok" for name in ("postgres", "redis"))
    if not ready:
        response.status_code = 503
        response.headers["Retry-After"] = "1"
    return {"status": "ready" if ready else "not_ready", "checks": checks}


@router.get("/metrics", response_class=PlainTextResponse, tags=["operations"])
async def metrics(request: Request) -> Response:
    """Prometheus: every metric of this API (all its workers), the outbox, the live deals'
    stock terms (docs/observability.md)."""
    return await metrics_response(request.app.state.resources)
