"""What a `POST /orders` came to: the one list of names the API counts and the load tools
tally. Pure (no prometheus-client, no locust), so locust and the unit tier import it."""

from __future__ import annotations

from enum import StrEnum
from typing import Any


class Outcome(StrEnum):
    ACCEPTED = "accepted"  # 202
    SOLD_OUT = "sold_out"  # a 409 with this code, and the next two
    LIMIT_EXCEEDED = "limit_exceeded"
    DEAL_NOT_ACTIVE = "deal_not_active"
    RATE_LIMITED = "rate_limited"  # 429
    REJECTED = "rejected"  # the API's: any other 4xx (invalid, unknown product...)
    ERROR = "error"  # the API's: a 5xx (e.g. a dependency down)
    FAILURE = "failure"  # a load tool's: anything that is neither a 202 nor a business no


# The business said no (a 409 with one of these codes): it settles an order request.
BUSINESS_REFUSALS = (Outcome.SOLD_OUT, Outcome.LIMIT_EXCEEDED, Outcome.DEAL_NOT_ACTIVE)
# hotdeal_orders_total{outcome} (hotdeal_core/observability/metrics.py), in report order.
API_OUTCOMES = (Outcome.ACCEPTED, *BUSINESS_REFUSALS, Outcome.RATE_LIMITED, Outcome.REJECTED,
                Outcome.ERROR)
# What a load generator tells apart (loadtest/outcomes.py), in report order.
CLIENT_OUTCOMES = (Outcome.ACCEPTED, *BUSINESS_REFUSALS, Outcome.FAILURE)


def error_code(body: Any) -> str | None:
    """The `error.code` of a parsed API error body (`{"error": {"code", "message"}}`)."""
    error = body.get("error") if isinstance(body, dict) else None
    code = error.get("code") if isinstance(error, dict) else None
    return code if isinstance(code, str) else None
