"""A swarm run's report: locust's result files and the machine read into a dict
(`build_report`, also report.json) and rendered as Markdown (`render_markdown`)."""

from __future__ import annotations

import csv
import json
import os
import platform
import re
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from devtools import charts
from devtools.tables import markdown_table
from hotdeal_core.observability.outcomes import CLIENT_OUTCOMES
from hotdeal_core.settings import Settings
from hotdeal_core.stock.client import close_redis, make_redis

ROOT = Path(__file__).resolve().parents[1]
ORDERS_ROW = "POST /orders"
COMPONENTS = ("order API", "stock worker", "reconciler", "Postgres", "Redis", "Kafka",
              "load generator")


def percentile(buckets: Mapping[int, int], total: int, pct: float) -> float:
    """Locust's `calculate_response_time_percentile` on its response-time buckets."""
    wanted, seen = int(total * pct), 0
    for value in sorted(buckets, reverse=True):
        seen += buckets[value]
        if total - seen <= wanted:
            return float(value)
    return 0.0


def _entry(raw: Mapping[str, Any]) -> dict[str, Any]:
    n, failures = int(raw["num_requests"]), int(raw["num_failures"])
    buckets = {int(k): int(v) for k, v in raw["response_times"].items()}
    span = (raw["last_request_timestamp"] or raw["start_time"]) - raw["start_time"]
    return {"requests": n, "failures": failures, "rps": n / span if span > 0 else 0.0,
            "avg_ms": raw["total_response_time"] / n if n else 0.0,
            "max_ms": float(raw["max_response_time"] or 0), "seconds": span,
            **{f"p{p}_ms": percentile(buckets, n, p / 100) for p in (50, 95, 99)}}


def locust_stats(prefix: Path, buy_row: str = ORDERS_ROW) -> dict[str, Any]:
    """The run's figures from `<prefix>.json` (final stats) and `<prefix>_failures.csv`."""
    # Not the --csv stats: a background greenlet rewrites them once a second, so they can
    # miss the run's last second; the JSON file is written at shutdown.
    entries = {f"{e['method']} {e['name']}": e
               for e in json.loads(prefix.with_suffix(".json").read_text())}
    buy = entries.get(f"POST {buy_row}")
    orders = _entry(buy) if buy else {"requests": 0, "failures": 0, "rps": 0.0, "seconds": 0.0}
    # locustfile.py's `record_outcome` entries, one per outcome seen
    outcomes = {o.value: int(entries[f"OUTCOME outcome:{o}"]["num_requests"])
                if f"OUTCOME outcome:{o}" in entries else 0 for o in CLIENT_OUTCOMES}
    seconds = orders["seconds"]
    webhook = entries.get("POST POST /payments/webhook")
    failures_csv = Path(f"{prefix}_failures.csv")
    top_failures = []
    if failures_csv.exists():
        with failures_csv.open(newline="") as f:
            rows = sorted(csv.DictReader(f), key=lambda r: -int(r["Occurrences"]))
        top_failures = [{"name": r["Name"], "error": r["Error"][:300],
                         "occurrences": int(r["Occurrences"])} for r in rows[:8]]
    return {"orders": orders, "outcomes": outcomes,
            "outcome_rps": {o: n / seconds if seconds > 0 else 0.0 for o, n in outcomes.items()},
            "error_rate_pct": 100 * orders["failures"] / orders["requests"]
            if orders["requests"] else 0.0,
            "webhook": _entry(webhook) if webhook else None, "top_failures": top_failures}


async def machine_info(database_url: str, redis_url: str) -> dict[str, Any]:
    info: dict[str, Any] = {"cpus": os.cpu_count(), "platform": platform.platform(),
                            "python": sys.version.split()[0]}
    engine = create_async_engine(database_url, pool_size=1)
    try:
        async with engine.connect() as conn:
            info["postgres"] = (await conn.execute(text("SHOW server_version"))).scalar_one()
    finally:
        await engine.dispose()
    # REDIS_CLUSTER (from the environment) says whether redis_url names a cluster node.
    redis = make_redis(Settings().model_copy(update={"redis_url": redis_url}),
                       max_connections=2)
    try:
        server = await redis.info("server")
        info["redis"] = server["redis_version"] + (
            " (cluster)" if server.get("redis_mode") == "cluster" else "")
    finally:
        await close_redis(redis)
    jars = sorted((ROOT / ".infra" / "kafka" / "libs").glob("kafka_2.*-*.jar"))
    found = re.search(r"kafka_[\d.]+-([\d.]+)\.jar", jars[0].name) if jars else None
    info["kafka"] = found.group(1) if found else "unknown (external broker)"
    return info


def build_report(run: Mapping[str, Any], machine: Mapping[str, Any], command: str,
                 title: str = "hotdeal demo") -> dict[str, Any]:
    """The report document: what ran, on what, and every figure of the run."""
    checks = run.get("checks", [])
    return {"title": title, "command": command, "machine": dict(machine),
            "passed": all(c["ok"] for c in checks), **run}


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f} ms" if value >= 100 else f"{value:.1f} ms"


def _cpu_rows(cpu: Mapping[str, Any]) -> list[str]:
    wall, cpus = cpu["wall_seconds"], cpu["cpus"]

    def row(name: str, sec: float | None) -> list[str]:
        if sec is None:
            return [name, "-", "-", "-"]
        return [name, f"{sec:.1f}", f"{100 * sec / wall:.0f} %", f"{100 * sec / wall / cpus:.0f} %"]
    other = max(0.0, cpu["machine_busy_seconds"]
                - sum(v or 0.0 for v in cpu["components"].values()))
    return markdown_table(
        ["component", "CPU seconds", "% of one core", "share of the machine"],
        [*(row(name, cpu["components"].get(name)) for name in COMPONENTS),
         row("other processes (not the system's)", other),
         row("**whole machine busy**", cpu["machine_busy_seconds"])], "lrrr")


def load_lines(stats: Mapping[str, Any]) -> list[str]:
    o, out = stats["orders"], stats["outcomes"]
    rows = [["requests (`POST /orders`)", f"{o['requests']:,}"],
            ["accepted (202)", f"{out['accepted']:,}"],
            ["sold out (409 sold_out)", f"{out['sold_out']:,}"],
            ["limit exceeded (409 limit_exceeded)", f"{out['limit_exceeded']:,}"],
            ["deal not active (409 deal_not_active)", f"{out['deal_not_active']:,}"],
            ["failures (5xx, timeouts, unexpected)",
             f"{o['failures']:,} ({stats['error_rate_pct']:.2f} %)"]]
    if o["requests"]:
        rows += [["latency p50 / p95 / p99",
                  f"{_ms(o['p50_ms'])} / {_ms(o['p95_ms'])} / {_ms(o['p99_ms'])}"],
                 ["latency avg / max", f"{_ms(o['avg_ms'])} / {_ms(o['max_ms'])}"],
                 ["throughput", f"{o['rps']:,.0f} req/s over {o['seconds']:.1f} s"],
                 ["accepted orders per second", f"{stats['outcome_rps']['accepted']:,.0f} /s"]]
    w = stats.get("webhook")
    if w:
        rows.append(["payment webhooks",
                     f"{w['requests']:,} ({w['failures']:,} failed), p95 {_ms(w['p95_ms'])}"])
    return markdown_table(["figure", "value"], rows, "lr")


def render_markdown(report: Mapping[str, Any]) -> str:
    r, m = report, report["machine"]
    cfg = r["config"]
    length = cfg["duration"] if cfg["shape"] == "constant" else "timed by the shape"
    out = [f"# {r['title']}: {'PASS' if r['passed'] else 'FAIL'}",
           "", f"Command: `{r['command']}`  ", f"Locust: `{r['locust_command']}`  ",
           f"Started {r['started_at']}; stock in **{cfg['mode']}** mode; {cfg['users']} "
           f"virtual users, {cfg['buyers']} distinct buyers, shape {cfg['shape']}, "
           f"{length}; deal {r.get('deal_id', '-')} of product "
           f"{r.get('product_id', '-')}: {cfg['stock']:,} units, per-user limit "
           f"{cfg['per_user_limit']}."
           + (f" Reservation TTL: {r['reservation_ttl']}." if r.get("reservation_ttl") else ""),
           "", "## Load", "", *load_lines(r["stats"]), ""]
    if r["stats"]["top_failures"]:
        out += ["Failures seen (locust's failures CSV):", "",
                *(f"- {f['occurrences']:,} x {f['name']}: `{f['error']}`"
                  for f in r["stats"]["top_failures"]), ""]
    out += charts.markdown(r.get("charts", []))
    if r.get("charts_error"):
        out += [f"Charts not drawn: {r['charts_error']}", ""]
    out += ["## CPU per component (during the swarm window)", "", *_cpu_rows(r["cpu"]), ""]
    if "orders_by_status" in r:
        out += ["## Orders by status", "", *markdown_table(
            ["status", "reason", "orders", "units"],
            [[s["status"], s["reason"] or "", f"{s['orders']:,}", f"{s['units']:,}"]
             for s in r["orders_by_status"]], "llrr"), ""]
    if r.get("audit"):
        audits = [(when, r[key]) for key, when in (
            ("audit_at_stop", "reconciled (`deal stop --wait`)"), ("audit", "after settlement"))]
        out += ["## Stock audit", "", *markdown_table(
            ["when", "initial", "= on sale", "+ pending", "+ confirmed", "+ in flight",
             "cancelled", "verdict"],
            [[when, *(f"{a[k]:,}" for k in ("initial", "on_sale", "pending", "confirmed",
                                             "in_flight", "cancelled")),
              f"**{'holds' if a['balanced'] else 'DOES NOT HOLD'}** ({a['status']})"]
             for when, a in audits], "lrrrrrrl")]
        st = r["settlement"]
        out += ["", f"Settlement: the stock worker applied every recorded payment "
                f"{st['seconds']:.0f} s after the reconciliation" if not st["unsettled"] else
                f"Settlement: **{st['unsettled']:,} paid orders still PENDING** after "
                f"{st['seconds']:.0f} s (stock worker lag)", ""]
    if r.get("checks"):
        out += ["## Verifications", "", *markdown_table(
            ["check", "result", "detail"],
            [[c["name"], "pass" if c["ok"] else "**FAIL**", c["detail"]] for c in r["checks"]]),
            ""]
    if r.get("outbox_delay"):
        d = r["outbox_delay"]
        out += ["## Outbox publish delay (OrderPlaced: published_at - created_at)", "",
                f"{d['rows']:,} rows: p50 {_ms(d['p50_ms'])}, p95 {_ms(d['p95_ms'])}, "
                f"max {_ms(d['max_ms'])}", ""]
    out += ["## Machine", "", f"{m['cpus']} CPUs, {m['platform']}; Python {m['python']}, "
            f"PostgreSQL {m['postgres']}, Redis {m['redis']}, Kafka {m['kafka']}. CPU is read "
            "with psutil (all processes of each component, children included); Postgres is the "
            "whole server (other databases' work included).", "",
            "Files: `report.md`, `report.json`, `locust.html`, `locust_stats.csv`, "
            "`locust_stats_history.csv`, `locust_failures.csv`, `locust.json`, `locust.log`, "
            "`accepted.txt`, `samples.csv` (the deal sampled every second), "
            f"{', '.join(f'`{c}`' for c in r.get('charts', [])) or 'no charts'}.", ""]
    return "\n".join(out)


def draw_charts(report: Mapping[str, Any], out_dir: Path) -> dict[str, Any]:
    """The run's charts (devtools/charts.py) drawn into out_dir, as report keys: `charts`
    (file names) or `charts_error` (a chart that cannot be drawn does not lose the report)."""
    try:
        pngs = charts.draw({str(report.get("label", "run")): charts.read_run(out_dir)}, out_dir)
    except (OSError, ValueError, KeyError) as exc:
        return {"charts": [], "charts_error": f"{type(exc).__name__}: {exc}"}
    return {"charts": [p.name for p in pngs]}


def write_report(report: Mapping[str, Any], out_dir: Path) -> str:
    """Draw the charts, write report.json and report.md into out_dir; returns the
    markdown."""
    report = {**report, **draw_charts(report, out_dir)}
    markdown = render_markdown(report)
    (out_dir / "report.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    (out_dir / "report.md").write_text(markdown)
    return markdown
