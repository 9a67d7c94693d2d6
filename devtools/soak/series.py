"""Which sampled series the soak judges, by which rule, and why the others are not judged."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from devtools.soak.flat import Rule, Verdict, judge


@dataclass(frozen=True)
class Series:
    prefix: str  # a sample key, or the start of several ("rss_mb." -> one per process)
    unit: str
    rule: Rule | None  # None: charted and reported, not judged (`why` says why)
    why: str
    min_duration: float = 0.0  # judged only in runs at least this long (seconds)


SERIES: tuple[Series, ...] = (
    Series("rss_mb.", "MB", Rule(0.10, 8), "a leak grows a process's memory deal after deal"),
    Series("redis_keys", "keys", Rule(0.25, 20), "a deal's keys must go with its flush"),
    Series("redis_db_mb", "MB", Rule(0.25, 0.5), "the same, in bytes"),
    Series("outbox_unpublished", "rows", Rule(0.5, 200), "the relay keeps up"),
    Series("outbox_rows", "rows", Rule(0.5, 500),
           "published rows are deleted after OUTBOX_RETENTION_HOURS (short here)"),
    Series("lag.", "records", Rule(0.5, 200), "the consumers keep up"),
    Series("paid_waiting", "orders", Rule(0.5, 100), "paid orders get CONFIRMED, not queued"),
    Series("cpu_ms_per_order.", "ms", Rule(0.5, 1.0),
           "no process does more work per order over time (CPU, not wall time: what other "
           "work on the machine barely moves)"),
    # Latency follows the machine's contention: a 3-minute run at load average 8-22 saw
    # p50 double (15 -> 29 ms) with every process's CPU per order flat; hence x2 + a floor.
    Series("order_p50_ms", "ms", Rule(1.0, 10), "POST /orders does not slow down"),
    Series("order_p99_ms", "ms", Rule(1.0, 50), "its tail"),
    Series("confirm_p50_ms", "ms", Rule(1.0, 50), "payment-to-CONFIRMED does not slow down"),
    Series("confirm_p99_ms", "ms", Rule(1.0, 150), "its tail"),
    Series("pg_mb.outbox", "MB", Rule(0.5, 2.0),
           "bloat: deleted rows' space is reused once autovacuum has run (a 1-minute naptime, "
           "then 20 % dead rows): judged in runs of 10 minutes or more, by its live rows "
           "(outbox_rows) in shorter ones", min_duration=600),
    Series("pg_mb.orders", "MB", None, "orders are kept forever: grows with every order"),
    Series("pg_mb.payments", "MB", None, "payments are kept forever"),
    Series("pg_mb.processed_events", "MB", None,
           "kept >= KAFKA_TOPIC_RETENTION_HOURS + 2 h (a redelivery must still be "
           "recognised): grows through any run shorter than that"),
    Series("redis_server_mb", "MB", None, "the whole server, shared with other dbs"),
    Series("orders_per_s", "req/s", None, "answers per second (the offered load is fixed)"),
    Series("cpu_pct.", "% of a core", None, "each process's CPU (soak: the load generator)"),
    Series("loadavg_1m", "", None, "the machine's load: other work on a shared machine"),
)


def keys_of(spec: Series, samples: Sequence[Mapping[str, Any]]) -> list[str]:
    found = {k for row in samples for k in row if k == spec.prefix or
             (spec.prefix.endswith(".") and k.startswith(spec.prefix))}
    return sorted(found)


def points(key: str, samples: Sequence[Mapping[str, Any]]) -> list[tuple[float, float]]:
    return [(float(r["t"]), float(r[key])) for r in samples if r.get(key) is not None]


def judged(spec: Series, duration: float) -> bool:
    return spec.rule is not None and duration >= spec.min_duration


def verdicts(samples: Sequence[Mapping[str, Any]], warmup: float, duration: float
             ) -> list[Verdict]:
    """A verdict on every series found in the samples that a run this long judges."""
    out = []
    for spec in SERIES:
        if spec.rule is None or not judged(spec, duration):
            continue
        for key in keys_of(spec, samples):
            out.append(judge(key, spec.unit, points(key, samples), spec.rule, warmup))
    return out
