"""The pure arithmetic of benchmarks/fairness.py: shares, percentiles, arrival schedules."""

from __future__ import annotations

import math
import random
import statistics
from collections.abc import Sequence
from dataclasses import dataclass


def share_ratio(script_units: int, people_units: int, script_accounts: int,
                people_accounts: int) -> float:
    """The scripts' share of the units sold divided by their share of the accounts: 1.0 is
    fair, above 1 the scripts got more than their accounts' share. 0 units sold: 0.0."""
    units, accounts = script_units + people_units, script_accounts + people_accounts
    if accounts <= 0 or script_accounts <= 0:
        raise ValueError("the scripts need accounts")
    if units <= 0:
        return 0.0
    return (script_units / units) / (script_accounts / accounts)


def ratio_ceiling(stock: int, script_accounts: int, people_accounts: int,
                  per_user_limit: int = 1) -> float:
    """The highest share ratio possible: every script account buys its limit first."""
    scripts = min(stock, script_accounts * per_user_limit)
    people = min(stock - scripts, people_accounts * per_user_limit)
    return share_ratio(scripts, people, script_accounts, people_accounts)


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100), linear between the closest ranks (numpy's default)."""
    if not values:
        raise ValueError("no values")
    if not 0 <= q <= 100:
        raise ValueError(f"percentile {q} outside 0-100")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


@dataclass(frozen=True)
class Latency:
    """Latency figures of one set of requests, in the unit of the values given."""

    count: int
    mean: float
    p50: float
    p95: float
    p99: float
    max: float

    @classmethod
    def of(cls, values: Sequence[float]) -> Latency:
        return cls(len(values), statistics.fmean(values), percentile(values, 50),
                   percentile(values, 95), percentile(values, 99), max(values))

    def spread_ok(self, factor: float = 3.0) -> bool:
        """The opening target: p99 at most `factor` times the mean."""
        return self.p99 <= factor * self.mean


def arrivals(count: int, earliest: float, latest: float, rng: random.Random) -> list[float]:
    """`count` moments drawn uniformly in [earliest, latest] (seconds after the opening),
    sorted: when each person clicks."""
    if count < 0 or latest < earliest:
        raise ValueError("need count >= 0 and earliest <= latest")
    return sorted(rng.uniform(earliest, latest) for _ in range(count))


def retry_after(header: str | None, default: float = 1.0) -> float:
    """Seconds to wait from a Retry-After header (delta-seconds); `default` if absent or
    not a number (an HTTP date is not sent by this API)."""
    try:
        seconds = float(header) if header is not None else default
    except ValueError:
        return default
    return max(0.0, seconds) if math.isfinite(seconds) else default


def wrk_delay_ms(rate: float, connections: int) -> int:
    """The per-request delay (ms) each of `connections` wrk connections waits so that
    together they send about `rate` requests/s (an upper bound: latency adds to it)."""
    if rate <= 0 or connections <= 0:
        raise ValueError("need a positive rate and connections")
    return max(0, round(1000 * connections / rate))


def mean_and_max(values: Sequence[float]) -> tuple[float, float]:
    return statistics.fmean(values), max(values)
