"""How the load swarm classifies one `POST /orders` answer. Pure: no locust import here
(importing locust monkey-patches the process with gevent), so unit tests can use it."""

from __future__ import annotations

from typing import Any

from hotdeal_core.observability.outcomes import (
    BUSINESS_REFUSALS,
    CLIENT_OUTCOMES,
    Outcome,
    error_code,
)

__all__ = ["CLIENT_OUTCOMES", "Outcome", "classify", "error_code"]


def classify(status_code: int, body: Any) -> Outcome:
    """202 is accepted; a 409 with a business code is that code; anything else (an unknown
    409 code, a 4xx, a 5xx, a connection error or timeout reported as status 0) a failure."""
    if status_code == 202:
        return Outcome.ACCEPTED
    code = error_code(body) if status_code == 409 else None
    return Outcome(code) if code in BUSINESS_REFUSALS else Outcome.FAILURE
