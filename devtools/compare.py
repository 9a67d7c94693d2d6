"""`make compare`: both stock modes back to back under identical load, plus references
(trivial app, sold-out refusals, accepted only). Writes reports/compare-<timestamp>/
comparison.{md,json}; exit 1 if a verification fails (README, "Measuring")."""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from benchmarks.results import Recorder
from devtools import charts, report
from devtools.procs import MODULES, Proc
from devtools.swarm import (
    BIN,
    ROOT,
    RUN_DIR,
    SwarmConfig,
    add_load_arguments,
    mode_env,
    procs,
    run_swarm,
    stamp,
)
from devtools.tables import markdown_table
from hotdeal_core.settings import load_settings

Run = Mapping[str, Any]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_trivial(out_dir: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    out_dir.mkdir(parents=True, exist_ok=True)
    with (out_dir / "trivial-app.log").open("wb") as log:
        popen = subprocess.Popen([str(BIN / "uvicorn"), "loadtest.trivial_app:app", "--host",
                                  "127.0.0.1", "--port", str(port), "--log-level", "warning"],
                                 cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 30
    while True:
        try:
            req = urllib.request.Request(f"{url}/noop", data=b"{}", method="POST",
                                         headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(req, timeout=2) as resp:
                if resp.status == 202:
                    return popen, url
        except (urllib.error.URLError, OSError) as exc:
            if popen.poll() is not None or time.monotonic() > deadline:
                popen.kill()
                raise RuntimeError(f"the trivial app did not start: {out_dir}/trivial-app.log"
                                   ) from exc
        time.sleep(0.1)


def _o(run: Run, key: str) -> float | None:
    value = run["stats"]["orders"].get(key)
    return None if value is None else float(value)


def _cpu(name: str) -> Callable[[Run], float | None]:
    def pct(run: Run) -> float | None:
        sec = run["cpu"]["components"].get(name)
        return None if sec is None else 100 * sec / run["cpu"]["wall_seconds"]
    return pct


def _other_cpu(run: Run) -> float:
    cpu = run["cpu"]
    known: float = sum(v or 0.0 for v in cpu["components"].values())
    busy: float = cpu["machine_busy_seconds"]
    wall: float = cpu["wall_seconds"]
    return max(0.0, 100 * (busy - known) / wall)


def _outbox_p95(run: Run) -> float | None:
    d = run.get("outbox_delay")
    return None if not d else d["p95_ms"]


# (label, value of a run, format, ratio): "up" = Redis/DB (bigger is better), "down" = DB/Redis
ROWS: list[tuple[str, Callable[[Run], float | None], str, str]] = [
    ("requests (POST /orders)", lambda r: _o(r, "requests"), "{:,.0f}", ""),
    ("accepted", lambda r: r["stats"]["outcomes"]["accepted"], "{:,.0f}", ""),
    ("limit exceeded", lambda r: r["stats"]["outcomes"]["limit_exceeded"], "{:,.0f}", ""),
    ("sold out", lambda r: r["stats"]["outcomes"]["sold_out"], "{:,.0f}", ""),
    ("failures", lambda r: _o(r, "failures"), "{:,.0f}", ""),
    ("error rate %", lambda r: r["stats"]["error_rate_pct"], "{:.2f}", ""),
    ("throughput req/s", lambda r: _o(r, "rps"), "{:,.0f}", "up"),
    ("accepted orders/s", lambda r: r["stats"]["outcome_rps"]["accepted"], "{:,.1f}", "up"),
    ("p50 ms", lambda r: _o(r, "p50_ms"), "{:,.0f}", "down"),
    ("p95 ms", lambda r: _o(r, "p95_ms"), "{:,.0f}", "down"),
    ("p99 ms", lambda r: _o(r, "p99_ms"), "{:,.0f}", "down"),
    ("avg ms", lambda r: _o(r, "avg_ms"), "{:,.1f}", "down"),
    *((f"CPU {name} (% of a core)", _cpu(name), "{:.0f}", "") for name in report.COMPONENTS),
    ("CPU other processes (% of a core)", _other_cpu, "{:.0f}", ""),
    ("CPU whole machine (% of a core)",
     lambda r: 100 * r["cpu"]["machine_busy_seconds"] / r["cpu"]["wall_seconds"], "{:.0f}", ""),
    ("outbox publish delay p95 ms", _outbox_p95, "{:,.0f}", ""),
]


def _fmt(value: float | None, fmt: str) -> str:
    return "-" if value is None else fmt.format(value)


def _ratio(redis: float | None, db: float | None, kind: str) -> str:
    if not kind or not redis or not db:
        return ""
    return f"x{redis / db:.1f} (Redis/DB)" if kind == "up" else f"x{db / redis:.1f} (DB/Redis)"


def _checks(run: Run) -> str:
    failed = [c["name"] for c in run.get("checks", []) if not c["ok"]]
    return "pass" if not failed else "**FAIL**: " + ", ".join(failed)


def render(doc: Mapping[str, Any]) -> str:
    runs, a, m = doc["runs"], doc["args"], doc["machine"]
    redis, db = runs["redis"], runs["db"]
    out = [f"# Stock in Redis vs in Postgres: {'PASS' if doc['passed'] else 'FAIL'}", "",
           f"Command: `{doc['command']}`; {a['users']} virtual users, {a['users']} distinct "
           f"buyers, {a['duration']} each, shape {a['shape']}, deal of {a['stock']:,} units, "
           f"per-user limit {a['limit']}, payments 80 % succeed / 10 % fail / 10 % never.", "",
           *markdown_table(["figure", "DB (hot row lock)", "Redis (Lua)", "ratio"], [
               *([label, _fmt(get(db), fmt), _fmt(get(redis), fmt),
                  _ratio(get(redis), get(db), kind)] for label, get, fmt, kind in ROWS),
               ["verifications", _checks(db), _checks(redis), ""]], "lrrr"), "",
           "References (same harness, users and duration):", ""]
    ceiling = _o(runs["trivial"], "rps") or 0.0

    def ref(label: str, run: Run, rate: float | None) -> list[str]:
        pct = f"{100 * rate / ceiling:.0f} %" if rate is not None and ceiling else "-"
        checks = _checks(run) if run.get("checks") else "-"
        return [label, _fmt(rate, "{:,.0f}"), _fmt(_o(run, "p50_ms"), "{:,.0f}"),
                _fmt(_o(run, "p95_ms"), "{:,.0f}"), pct, checks]
    acc, sold = runs["accepted"], runs["sold_out"]
    out += [*markdown_table(
                ["reference", "throughput /s", "p50 ms", "p95 ms", "% of trivial",
                 "verifications"],
                [ref("trivial FastAPI endpoint (POST /noop)", runs["trivial"], ceiling),
                 ref("Redis mode: POST /orders, every answer", redis, _o(redis, "rps")),
                 ref("Redis mode: accepted orders, no refusals (limit = stock = 10^6)", acc,
                     acc["stats"]["outcome_rps"]["accepted"]),
                 ref("Redis mode: sold-out refusals (409 sold_out, deal of 1 unit)", sold,
                     sold["stats"]["outcome_rps"]["sold_out"]),
                 ref("DB mode: POST /orders, every answer", db, _o(db, "rps"))], "lrrrrl"), "",
            f"Machine: {m['cpus']} CPUs, {m['platform']}; Python {m['python']}, PostgreSQL "
            f"{m['postgres']}, Redis {m['redis']}, Kafka {m['kafka']}. Load generator, "
            "services and processes share this machine.", "",
            *charts.markdown(doc.get("charts", []))]
    return "\n".join(out)


def summary(doc: Mapping[str, Any]) -> dict[str, Any]:
    """The comparison's figures, small enough to commit (benchmarks/results.py)."""
    runs = doc["runs"]
    table = {label: {"db": get(runs["db"]), "redis": get(runs["redis"]),
                     "ratio": _ratio(get(runs["redis"]), get(runs["db"]), kind)}
             for label, get, _, kind in ROWS}
    acc, sold = runs["accepted"], runs["sold_out"]
    refs = {"trivial": (runs["trivial"], _o(runs["trivial"], "rps")),
            "redis_all_answers": (runs["redis"], _o(runs["redis"], "rps")),
            "redis_accepted_only": (acc, acc["stats"]["outcome_rps"]["accepted"]),
            "redis_sold_out": (sold, sold["stats"]["outcome_rps"]["sold_out"]),
            "db_all_answers": (runs["db"], _o(runs["db"], "rps"))}
    return {"args": doc["args"], "versions": doc["machine"], "passed": doc["passed"],
            "db_vs_redis": table,
            "references": {name: {"per_s": rate, "p50_ms": _o(run, "p50_ms"),
                                  "p95_ms": _o(run, "p95_ms"), "checks": _checks(run)}
                           for name, (run, rate) in refs.items()}}


def mode_charts(runs: Mapping[str, Run], out: Path) -> list[Path]:
    """The DB and Redis runs side by side over time (their folders' history and samples)."""
    series = {f"{mode.upper() if mode == 'db' else 'Redis'} mode":
              charts.read_run(out / runs[mode]["config"]["out_dir"].name)
              for mode in ("db", "redis") if mode in runs}
    return charts.draw(series, out, "compare-")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_load_arguments(p)
    p.add_argument("--command", default="python -m devtools.compare")
    p.add_argument("--result", type=Path, help="also write a small result file here "
                   "(benchmarks/results.py), e.g. docs/scenarios/results/<name>.json")
    a = p.parse_args()
    recorder = Recorder(a.command)
    out = ROOT / "reports" / f"compare-{stamp()}"
    base = SwarmConfig(out, users=a.users, buyers=a.buyers, duration=a.duration, shape=a.shape,
                       stock=a.stock, per_user_limit=a.limit, processes=a.processes)
    were_running = any(Proc(n, RUN_DIR).alive() for n in MODULES)
    runs: dict[str, dict[str, Any]] = {}
    try:
        procs("down")
        trivial, url = start_trivial(out / "trivial")
        try:
            runs["trivial"] = run_swarm(replace(base, out_dir=out / "trivial", label="trivial",
                                                target="noop", api_url=url), api_pid=trivial.pid)
        finally:
            trivial.terminate()
            trivial.wait(30)
        procs("up", mode_env("redis"))
        runs["redis"] = run_swarm(replace(base, out_dir=out / "redis", label="redis"))
        sure = {"HOTDEAL_PAY_SUCCESS_RATIO": "1", "HOTDEAL_PAY_FAIL_RATIO": "0"}
        runs["sold_out"] = run_swarm(replace(base, out_dir=out / "sold-out", label="sold-out",
                                             stock=1, per_user_limit=1, env=sure))
        runs["accepted"] = run_swarm(replace(base, out_dir=out / "accepted", label="accepted",
                                             stock=10**6, per_user_limit=10**6))
        procs("down")
        procs("up", mode_env("db"))
        runs["db"] = run_swarm(replace(base, out_dir=out / "db", label="db", mode="db"))
    finally:
        procs("down")
        if were_running:
            procs("up", mode_env("redis"))
    settings = load_settings()
    machine = asyncio.run(report.machine_info(settings.database_url, settings.redis_url))
    for name, run in runs.items():
        report.write_report(report.build_report(run, machine, a.command, f"compare: {name}"),
                            out / run["config"]["out_dir"].name)
    doc = {"command": a.command, "args": vars(a), "machine": machine, "runs": runs,
           "passed": all(c["ok"] for r in runs.values() for c in r.get("checks", [])),
           "charts": [p.name for p in mode_charts(runs, out)]}
    markdown = render(doc)
    (out / "comparison.json").write_text(json.dumps(doc, indent=2, default=str) + "\n")
    (out / "comparison.md").write_text(markdown)
    print("\n" + markdown)
    if a.result:
        recorder.write(a.result, summary(doc))
    print(f"[compare] written to {out.relative_to(ROOT)}/ (comparison.md, comparison.json, "
          "one folder per run)")
    sys.exit(0 if doc["passed"] else 1)


if __name__ == "__main__":
    main()
