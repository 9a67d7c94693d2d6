"""Per-step and during-the-spike figures from locust's full stats history.

    python -m benchmarks.history steps <run>/locust_stats_history.csv START STEP SECONDS MAX
    python -m benchmarks.history spike <run>/locust_stats_history.csv PEAK

The history has one row per second per request name when locust runs with
`--csv-full-history` (devtools/swarm/locust_run.py passes it); only the `POST /orders` rows are read
(the "Aggregated" row also counts the 0 ms OUTCOME entries and the webhooks). Requests and
failures are differences of locust's cumulative counts; p50/p95/p99 are locust's "current"
percentiles at the last row of the span, a sliding window of about its last 10 s.

- steps (loadtest/shapes.py's step shape: START users, +STEP every SECONDS up to MAX): the
  span of a step is its rows (their user count is the step's); its figures run from the
  previous step's last row to its own last row; req/s = requests / SECONDS.
- spike: from the first row at PEAK users (the end of the ramp) to the last one.
"""

from __future__ import annotations

import argparse
import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from devtools.tables import markdown_table

NAME = "POST /orders"


@dataclass(frozen=True)
class Row:
    t: int
    users: int
    requests: int  # cumulative
    failures: int  # cumulative
    p50: str
    p95: str
    p99: str


def read(path: Path, name: str = NAME) -> list[Row]:
    with path.open(newline="") as f:
        rows = [Row(int(r["Timestamp"]), int(r["User Count"]), int(r["Total Request Count"]),
                    int(r["Total Failure Count"]), r["50%"], r["95%"], r["99%"])
                for r in csv.DictReader(f) if r["Name"] == name]
    if not rows:
        raise SystemExit(f"{path} has no {name!r} rows: was locust run with "
                         "--csv-full-history?")
    return rows


def _ms_value(text: str) -> float | None:
    return None if text == "N/A" else float(text)


def step_figures(rows: list[Row], start: int, step: int, seconds: float,
                 top: int) -> list[dict[str, Any]]:
    """Per step of the step shape: users, requests, req/s, failures, p50/p95/p99 ms."""
    out: list[dict[str, Any]] = []
    before = Row(0, 0, 0, 0, "N/A", "N/A", "N/A")
    for k, users in enumerate(range(start, top + 1, step), 1):
        span = [r for r in rows if r.users == users]
        if not span:
            break
        last = span[-1]
        n, failed = last.requests - before.requests, last.failures - before.failures
        out.append({"step": k, "users": users, "requests": n, "rps": round(n / seconds, 1),
                    "failures": failed, "error_pct": round(100 * failed / n if n else 0, 2),
                    "p50_ms": _ms_value(last.p50), "p95_ms": _ms_value(last.p95),
                    "p99_ms": _ms_value(last.p99)})
        before = last
    return out


def spike_figures(rows: list[Row], peak: int) -> dict[str, Any]:
    """The figures at the peak: from the first row at PEAK users to the last one."""
    at_peak = [r for r in rows if r.users == peak]
    if len(at_peak) < 2:
        raise SystemExit(f"fewer than two rows at {peak} users")
    first, last = at_peak[0], at_peak[-1]
    n, failed, span = (last.requests - first.requests, last.failures - first.failures,
                       last.t - first.t)
    return {"seconds": span, "requests": n, "rps": round(n / span, 1), "failures": failed,
            "error_pct": round(100 * failed / n if n else 0, 2), "p50_ms": _ms_value(last.p50),
            "p95_ms": _ms_value(last.p95), "p99_ms": _ms_value(last.p99)}


def _cell(value: float | None) -> str:
    return "N/A" if value is None else f"{value:,.0f}"


def steps(rows: list[Row], start: int, step: int, seconds: float, top: int) -> list[str]:
    return markdown_table(
        ["step", "users", "requests", "req/s", "failures", "error %", "p50 ms", "p95 ms",
         "p99 ms"],
        [[f["step"], f["users"], f"{f['requests']:,}", f"{f['rps']:,.0f}", f"{f['failures']:,}",
          f"{f['error_pct']:.2f}", _cell(f["p50_ms"]), _cell(f["p95_ms"]), _cell(f["p99_ms"])]
         for f in step_figures(rows, start, step, seconds, top)], "r" * 9)


def spike(rows: list[Row], peak: int) -> list[str]:
    f = spike_figures(rows, peak)
    return markdown_table(
        ["seconds at the peak", "requests", "req/s", "failures", "error %", "p50 ms", "p95 ms",
         "p99 ms"],
        [[f["seconds"], f"{f['requests']:,}", f"{f['rps']:,.0f}", f"{f['failures']:,}",
          f"{f['error_pct']:.2f}", _cell(f["p50_ms"]), _cell(f["p95_ms"]), _cell(f["p99_ms"])]],
        "r" * 8)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="what", required=True)
    s = sub.add_parser("steps")
    s.add_argument("csv", type=Path)
    for arg in ("start", "step"):
        s.add_argument(arg, type=int)
    s.add_argument("seconds", type=float)
    s.add_argument("max", type=int)
    k = sub.add_parser("spike")
    k.add_argument("csv", type=Path)
    k.add_argument("peak", type=int)
    a = p.parse_args(argv)
    rows = read(a.csv)
    lines = steps(rows, a.start, a.step, a.seconds, a.max) if a.what == "steps" \
        else spike(rows, a.peak)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
