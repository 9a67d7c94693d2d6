"""Topic names, with the optional KAFKA_TOPIC_PREFIX (tests use "test.")."""

from __future__ import annotations

from dataclasses import dataclass

from schemas.events import (
    DEAD_LETTER_TOPIC,
    HOTDEALS_TOPIC,
    ORDER_REQUESTS_TOPIC,
    ORDERS_TOPIC,
    PAYMENTS_TOPIC,
    TOPIC_OF,
    AnyEvent,
)


@dataclass(frozen=True)
class Topics:
    prefix: str = ""

    @property
    def orders(self) -> str:
        return self.prefix + ORDERS_TOPIC

    @property
    def order_requests(self) -> str:
        return self.prefix + ORDER_REQUESTS_TOPIC

    @property
    def payments(self) -> str:
        return self.prefix + PAYMENTS_TOPIC

    @property
    def hotdeals(self) -> str:
        return self.prefix + HOTDEALS_TOPIC

    @property
    def dead_letter(self) -> str:
        return self.prefix + DEAD_LETTER_TOPIC

    def all(self) -> list[str]:
        return [self.orders, self.order_requests, self.payments, self.hotdeals,
                self.dead_letter]

    def of(self, event: AnyEvent) -> str:
        return self.prefix + TOPIC_OF[event.type]


def event_key(event: AnyEvent) -> str:
    """Order and payment topics are keyed by order id, hotdeals.v1 by product id."""
    order_id = getattr(event, "order_id", None)
    if order_id is not None:
        return str(order_id)
    return str(event.product_id)  # type: ignore[union-attr]
