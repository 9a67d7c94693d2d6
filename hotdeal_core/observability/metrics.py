"""The metrics the processes record as they work, in prometheus-client's default registry
(its multiprocess mode adds up the order API's workers: docs/observability.md). Gauges of
state in Postgres, Redis or Kafka are read when scraped instead (`exposition`)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from prometheus_client import Counter, Histogram, disable_created_metrics

from hotdeal_core.observability.outcomes import API_OUTCOMES, BUSINESS_REFUSALS, Outcome

# No `*_created` series beside every counter and histogram: nothing here reads them, and
# they double the series of a scrape. Before any metric is built (here and FastStream's).
disable_created_metrics()  # type: ignore[no-untyped-call]

# Seconds; from a Redis round trip (~0.2 ms) to a request stuck on a pool (10 s).
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
                   2.5, 5.0, 10.0)
# Settlement and outbox delays run from milliseconds to the 10-minute reservation TTL.
DELAY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
                 300.0, 600.0)

# Any other 4xx is `rejected`, a 5xx `error`; these codes are an outcome of their own.
_CODED_OUTCOMES = frozenset({*BUSINESS_REFUSALS, Outcome.RATE_LIMITED})

ORDERS = Counter("hotdeal_orders",
                 f"POST /orders answers by outcome ({', '.join(API_OUTCOMES)})", ["outcome"])
HTTP_DURATION = Histogram("hotdeal_http_request_duration_seconds",
                          "Order API request duration, by route template and status code",
                          ["route", "status"], buckets=LATENCY_BUCKETS)
RESERVATION_DURATION = Histogram(
    "hotdeal_reservation_duration_seconds",
    "Duration of one Redis reservation call (the Lua script reserving for a batch of one "
    "deal's buyers)", buckets=LATENCY_BUCKETS)
SETTLEMENT_DURATION = Histogram(
    "hotdeal_settlement_duration_seconds",
    "From a payment's acceptance (its PaymentSucceeded event) to its order's CONFIRMED "
    "commit by the stock worker", buckets=DELAY_BUCKETS)
OUTBOX_PUBLISH_DELAY = Histogram(
    "hotdeal_outbox_publish_delay_seconds",
    "Time from an outbox row's commit to its publication on Kafka", buckets=DELAY_BUCKETS)
OUTBOX_PUBLISHED = Counter("hotdeal_outbox_published", "Outbox rows published to Kafka")
DEAD_LETTERS = Counter("hotdeal_dead_letters", "Consumed records written to the dead-letter "
                       "topic, by consumer group and source topic", ["consumer", "topic"])

# Bound once, as the HTTP children below: no label lookup per request.
_outcome_counters = {outcome: ORDERS.labels(outcome) for outcome in API_OUTCOMES}


def order_outcome(status: int, code: str | None = None) -> Outcome:
    """The outcome of an order answer: its HTTP status and, for a refusal, its error code."""
    if 200 <= status < 300:
        return Outcome.ACCEPTED
    if code in _CODED_OUTCOMES:
        return Outcome(code)
    return Outcome.REJECTED if 400 <= status < 500 else Outcome.ERROR


def count_order(outcome: Outcome) -> None:
    _outcome_counters[outcome].inc()


_http_children: dict[tuple[str, int], Callable[[float], None]] = {}


def http_observer(route: str, status: int) -> Callable[[float], None]:
    """The `observe` of the (route, status) child, bound once per pair."""
    observe = _http_children.get((route, status))
    if observe is None:
        observe = _http_children[route, status] = HTTP_DURATION.labels(route, str(status)).observe
    return observe


def observe_settled(accepted_at: datetime) -> None:
    SETTLEMENT_DURATION.observe(max(0.0, (datetime.now(UTC) - accepted_at).total_seconds()))
