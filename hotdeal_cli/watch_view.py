"""What `hotdeal deal watch` computes and draws, with no I/O. A figure that could not be read
is None ("n/a"); one read with nothing to say over the interval shows as "-"."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from prometheus_client.parser import text_string_to_metric_families
from rich.console import Group
from rich.table import Table
from rich.text import Text

from hotdeal_core.observability.outcomes import BUSINESS_REFUSALS

ORDERS_METRIC = "hotdeal_orders"  # the parser's family name of hotdeal_orders_total
LATENCY_METRIC = "hotdeal_reservation_duration_seconds"
REFUSALS = tuple(o.value for o in BUSINESS_REFUSALS)  # the refusal rates shown, in order


@dataclass(frozen=True)
class ApiScrape:
    """One scrape of the order API's /metrics: orders by outcome (a counter) and the
    reservation-duration histogram as (upper bound, cumulative count), +Inf last."""

    outcomes: dict[str, float] = field(default_factory=dict)
    buckets: list[tuple[float, float]] = field(default_factory=list)


def parse_scrape(text: str) -> ApiScrape:
    """The two metrics of the watch from Prometheus text; samples that differ only in other
    labels (a worker, a route) are summed. Other metrics are ignored."""
    outcomes: dict[str, float] = {}
    buckets: dict[float, float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if family.name == ORDERS_METRIC and s.name == f"{ORDERS_METRIC}_total":
                outcome = s.labels.get("outcome", "")
                outcomes[outcome] = outcomes.get(outcome, 0.0) + s.value
            elif family.name == LATENCY_METRIC and s.name == f"{LATENCY_METRIC}_bucket":
                le = float(s.labels["le"])  # "+Inf" parses as inf
                buckets[le] = buckets.get(le, 0.0) + s.value
    return ApiScrape(outcomes, sorted(buckets.items()))


def counter_delta(before: float | None, after: float) -> float:
    """Increase of a counter; a smaller value means the process restarted (a reset), and
    then everything it counted since is the increase (Prometheus' `rate` rule)."""
    if before is None or after < before:
        return after
    return after - before


def bucket_delta(before: list[tuple[float, float]],
                 after: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """The histogram of the observations made between two scrapes."""
    old = dict(before)
    if any(count < old.get(le, 0.0) for le, count in after):  # a reset
        return list(after)
    return [(le, count - old.get(le, 0.0)) for le, count in after]


def quantile(q: float, buckets: list[tuple[float, float]]) -> float | None:
    """`histogram_quantile` on cumulative buckets: linear inside the bucket that holds the
    rank; the highest finite bound when the rank falls in +Inf. None without observations."""
    if not buckets or buckets[-1][1] <= 0:
        return None
    rank = q * buckets[-1][1]
    lower, below = 0.0, 0.0
    for le, count in buckets:
        if count >= rank:
            if math.isinf(le):
                return lower
            if count == below:
                return le
            return lower + (le - lower) * (rank - below) / (count - below)
        lower, below = le, count
    return lower


@dataclass(frozen=True)
class Sample:
    """Everything read at one refresh (monotonic `at`, seconds)."""

    at: float
    deal_id: int
    product_id: int
    status: str
    stock_backend: str
    initial: int
    stock_left: int | None
    orders: dict[str, int]  # orders by status (counts)
    accepted_per_s: float  # from created_at, the last complete window
    unsettled: int  # paid orders the stock worker has not applied yet
    unsettled_age_s: float | None  # since the oldest of their payments
    scrape: ApiScrape | None = None  # None: no --api-url, or it did not answer


@dataclass(frozen=True)
class Frame:
    """One refresh of the view; also the --json line."""

    deal_id: int
    product_id: int
    status: str
    stock_backend: str
    initial: int
    stock_left: int | None
    pending: int
    confirmed: int
    cancelled: int
    accepted_per_s: float
    refused_per_s: float | None
    refused_by_code_per_s: dict[str, float] | None
    errors_per_s: float | None
    p95_reservation_ms: float | None
    settlement_lag_orders: int
    settlement_lag_s: float | None
    audit: str | None  # "10 = 7 + 2 + 1 + 0 holds", None before the first audit
    audit_age_s: float | None
    api_answered: bool  # the last scrape of --api-url answered
    problem: str | None = None  # a dependency failed at the last refresh (figures stale)

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def rates(before: ApiScrape | None, after: ApiScrape, seconds: float
          ) -> tuple[dict[str, float], float | None]:
    """Per-second orders by outcome between two scrapes, and the p95 (ms) of the
    reservations made meanwhile (None: no reservation in the interval)."""
    per_s = {o: counter_delta(before.outcomes.get(o) if before else None, n) / seconds
             for o, n in after.outcomes.items()}
    window = bucket_delta(before.buckets if before else [], after.buckets)
    p95 = quantile(0.95, window)
    return per_s, None if p95 is None else 1000 * p95


def frame(prev: Sample | None, cur: Sample, audit: str | None = None,
          audit_age_s: float | None = None) -> Frame:
    refused = by_code = errors = p95 = None
    if cur.scrape is not None and prev is not None and prev.scrape is not None \
            and cur.at > prev.at:
        per_s, p95 = rates(prev.scrape, cur.scrape, cur.at - prev.at)
        by_code = {code: per_s.get(code, 0.0) for code in REFUSALS}
        # any other refusal the API counts (e.g. `rejected`: an invalid request)
        by_code.update({code: n for code, n in per_s.items()
                        if code not in by_code and code not in ("accepted", "error")})
        refused = sum(by_code.values())
        errors = per_s.get("error", 0.0)
    return Frame(cur.deal_id, cur.product_id, cur.status, cur.stock_backend, cur.initial,
                 cur.stock_left, cur.orders.get("PENDING", 0), cur.orders.get("CONFIRMED", 0),
                 cur.orders.get("CANCELLED", 0), cur.accepted_per_s, refused, by_code, errors,
                 p95, cur.unsettled, cur.unsettled_age_s, audit, audit_age_s,
                 cur.scrape is not None)


def _n(value: float | None, fmt: str = "{:,.0f}", missing: str = "n/a") -> str:
    return missing if value is None else fmt.format(value)


def lines(f: Frame) -> list[tuple[str, str]]:
    """(figure, value) rows of the view. The API's figures are "n/a" without --api-url or
    when it did not answer, "-" until two scrapes have answered."""
    api_missing = "-" if f.api_answered else "n/a"
    left = "n/a" if f.stock_left is None else f"{f.stock_left:,} of {f.initial:,}"
    codes = "" if f.refused_by_code_per_s is None else " (" + ", ".join(
        f"{c} {v:,.1f}" for c, v in f.refused_by_code_per_s.items()) + ")"
    lag = "none" if not f.settlement_lag_orders else (
        f"{f.settlement_lag_orders:,} paid orders not settled, oldest "
        f"{_n(f.settlement_lag_s, '{:.1f} s')}")
    audit = "n/a" if f.audit is None else f"{f.audit} ({_n(f.audit_age_s, '{:.0f}')} s ago)"
    return [("stock left", left),
            ("accepted orders/s", f"{f.accepted_per_s:,.1f}"),
            ("refused orders/s", _n(f.refused_per_s, "{:,.1f}", api_missing) + codes),
            ("errors/s", _n(f.errors_per_s, "{:,.1f}", api_missing)),
            ("orders", f"pending {f.pending:,} / confirmed {f.confirmed:,} / "
                       f"cancelled {f.cancelled:,}"),
            ("p95 reservation", _n(f.p95_reservation_ms, "{:,.1f} ms",
                                   api_missing if f.refused_per_s is None else "-")),
            ("settlement lag", lag),
            ("audit", audit)]


def render(f: Frame, interval: float) -> Group:
    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column("figure", style="bold")
    table.add_column("value")
    for name, value in lines(f):
        table.add_row(name, value)
    title = Text(f"deal {f.deal_id} of product {f.product_id}: {f.status} "
                 f"(stock in {f.stock_backend})", style="bold")
    footer = Text(f"every {interval:g} s; Ctrl-C stops; ends when the deal is reconciled",
                  style="dim")
    if f.problem is None:
        return Group(title, table, footer)
    return Group(title, table, Text(f"stale: {f.problem}", style="bold red"), footer)


def audit_text(values: Mapping[str, int], balanced: bool) -> str:
    v = values
    return (f"{v['initial']:,} = {v['on_sale']:,} + {v['pending']:,} + {v['confirmed']:,} + "
            f"{v['in_flight']:,} {'holds' if balanced else 'DOES NOT HOLD'}")
