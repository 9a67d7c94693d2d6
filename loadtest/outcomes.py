"""How the load swarm classifies one `POST /orders` answer. Pure: no locust import here
(importing locust monkey-patches the process with gevent), so unit tests can use it."""

from __future__ import annotations

from typing import Any, Final

ACCEPTED: Final = "accepted"
SOLD_OUT: Final = "sold_out"
LIMIT_EXCEEDED: Final = "limit_exceeded"
DEAL_NOT_ACTIVE: Final = "deal_not_active"
FAILURE: Final = "failure"

#: Every outcome, in report order.
OUTCOMES: Final[tuple[str, ...]] = (ACCEPTED, SOLD_OUT, LIMIT_EXCEEDED, DEAL_NOT_ACTIVE, FAILURE)

#: 409 codes that are the business saying "no", not the system failing.
EXPECTED_CONFLICTS: Final[frozenset[str]] = frozenset({SOLD_OUT, LIMIT_EXCEEDED, DEAL_NOT_ACTIVE})


def error_code(body: Any) -> str | None:
    """The `error.code` of an API error body (`{"error": {"code", "message"}}`), else None."""
    if not isinstance(body, dict):
        return None
    error = body.get("error")
    if not isinstance(error, dict):
        return None
    code = error.get("code")
    return code if isinstance(code, str) else None


def classify(status_code: int, body: Any) -> str:
    """One of OUTCOMES for an order attempt.

    202 is accepted; 409 with an expected business code (sold_out, limit_exceeded,
    deal_not_active) is that code; everything else (5xx, 4xx, an unknown 409 code, a
    connection error or timeout reported as status 0) is a failure.
    """
    if status_code == 202:
        return ACCEPTED
    if status_code == 409:
        code = error_code(body)
        if code in EXPECTED_CONFLICTS:
            return code
    return FAILURE
