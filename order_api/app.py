"""Composition root of the order API: `create_app(settings)` builds everything in the lifespan."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from hotdeal_core.bootstrap.resources import open_resources
from hotdeal_core.identity import BuyerTokens
from hotdeal_core.observability import tracing
from hotdeal_core.settings import Settings
from order_api.errors import install_error_handlers
from order_api.fastpath import SoldOutFastPath
from order_api.limits import OrderLimits
from order_api.observe import ObservedApp
from order_api.routes import router
from order_api.tracing import TracedApp

log = logging.getLogger(__name__)

OPENAPI_TAGS = [
    {"name": "orders", "description": "Buyers place, read and cancel orders (bearer JWT); "
                                      "trusted callers confirm them (admin token)."},
    {"name": "payments", "description": "The payment provider's signed callback."},
    {"name": "products", "description": "Products and their live deal's stock."},
    {"name": "deals", "description": "Start and end hot deals (admin token)."},
    {"name": "operations", "description": "Liveness, readiness, Prometheus metrics."},
]


def create_app(settings: Settings) -> FastAPI:
    settings.require_real_secrets()  # before anything listens
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with open_resources(settings) as resources:  # built here, closed here
            app.state.resources = resources
            app.state.ctx = resources.ctx
            log.info("order API ready (stock in %s)",
                     "redis" if settings.hotdeal_stock_redis else "postgres")
            yield
        log.info("order API stopped gracefully")

    app = FastAPI(title="hotdeal order API", version="1.0.0", lifespan=lifespan,
                  # Operation ids are the route functions' names (`place_order`), grouped by
                  # tag: a generated client has `orders.place_order`, not a path-derived name.
                  generate_unique_id_function=lambda route: route.name,
                  openapi_tags=OPENAPI_TAGS,
                  description="Flash-sale orders: stock reserved synchronously, "
                              "settled asynchronously through Kafka.")
    app.state.settings = settings
    # One verifier per process: its cache spares a verified token a second signature check
    # (order_api/buyers.py; built here, so a bad key file fails before anything listens).
    app.state.buyer_tokens = BuyerTokens(settings)
    # Per-process rate limits of POST /orders (order_api/limits.py): memory only, no I/O.
    app.state.order_limits = OrderLimits.from_settings(settings)
    install_error_handlers(app)
    # Rate limits and sold-out refusals from the memo, before routing and body validation
    # (fastpath.py).
    app.add_middleware(SoldOutFastPath, state=app.state)
    # Outside the fast path, so its answers are timed and counted too (order_api/observe.py).
    app.add_middleware(ObservedApp, log_requests=settings.log_requests)
    # Tracing (off by default): the outermost layer, so the span covers all of the above;
    # off, the layer is not there at all (hotdeal_core/observability/tracing.py).
    tracing.configure(settings, "hotdeal-order-api", head_sampling=True)
    if tracing.enabled():
        app.add_middleware(TracedApp)
    app.include_router(router)
    return app
