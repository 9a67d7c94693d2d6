"""A use case's answer as the HTTP body the route and the fast path both send."""

from __future__ import annotations

from hotdeal_core.usecases.views import OrderView
from schemas.http import OrderResponse


def order_response(order: OrderView) -> OrderResponse:
    return OrderResponse(
        order_id=order.id, status=order.status,
        product_id=order.product_id, hot_deal_id=order.hot_deal_id, user_id=order.user_id,
        quantity=order.quantity, unit_price=order.unit_price, total=order.total,
        cancel_reason=order.cancel_reason, expires_at=order.expires_at,
        created_at=order.created_at, updated_at=order.updated_at)
