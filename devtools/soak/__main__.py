"""`make soak DURATION=30m`: `python -m devtools.soak --duration 30m [--rate N] [--out DIR]`.
Exit 0 when every judged series is flat and every check holds (series.py says which and why)."""

from __future__ import annotations

import argparse
import asyncio
import shlex
import sys
import time
from dataclasses import asdict
from pathlib import Path

from benchmarks.results import Recorder
from devtools.report import machine_info
from devtools.soak.flat import Verdict
from devtools.soak.report import result_figures, write
from devtools.soak.run import RETENTION_INTERVAL_S, Plan, say, soak
from devtools.soak.series import verdicts
from devtools.swarm import ROOT
from hotdeal_cli.main import parse_duration
from hotdeal_core.settings import load_settings


def parse(argv: list[str]) -> tuple[Plan, Path, str, Path | None]:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--duration", default="30m", help="load time, e.g. 60s, 30m (default 30m)")
    p.add_argument("--interval", type=float, default=None,
                   help="seconds between samples (default: 5, or 2 for runs under 5 minutes)")
    p.add_argument("--rate", type=float, default=None,
                   help="orders/s (default: --fraction of a capacity measured first)")
    p.add_argument("--fraction", type=float, default=0.5)
    p.add_argument("--capacity-seconds", type=float, default=5.0)
    p.add_argument("--deal-seconds", type=float, default=15.0,
                   help="a deal's stock is the rate times this (about its time to sell out)")
    p.add_argument("--reservation-ttl", type=int, default=20,
                   help="RESERVATION_TTL_SECONDS of the run's processes (unpaid orders expire)")
    p.add_argument("--outbox-retention", type=float, default=10.0,
                   help="seconds a published outbox row is kept (the reconciler's duty)")
    p.add_argument("--out", type=Path, default=None)
    p.add_argument("--command", default=None, help="the command shown in the report")
    p.add_argument("--result", type=Path, default=None,
                   help="also write the run's figures (no samples) as a committed result file")
    a = p.parse_args(argv)
    duration = parse_duration(a.duration)
    interval = a.interval or (2.0 if duration < 300 else 5.0)
    # The start (imports, pools, caches, the first deal) is not the steady state, nor is the
    # outbox before its first published rows are old enough to delete (+ the duty's period).
    warmup = min(120.0, max(3 * interval, duration * 0.15,
                            a.outbox_retention + RETENTION_INTERVAL_S))
    plan = Plan(duration, interval, a.rate, a.fraction, a.capacity_seconds, a.deal_seconds,
                a.reservation_ttl, a.outbox_retention, warmup)
    out = a.out or ROOT / "reports" / f"soak-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}"
    return plan, out, a.command or shlex.join(["python", "-m", "devtools.soak", *argv]), \
        a.result


def main() -> None:
    plan, out, command, result = parse(sys.argv[1:])
    recorder = Recorder(command)
    rep = asyncio.run(soak(plan, out))
    settings = load_settings()
    rep["machine"] = asyncio.run(machine_info(settings.database_url, settings.redis_url))
    found: list[Verdict] = verdicts(rep["samples"], plan.warmup, plan.duration)
    rep.update(command=command, plan=asdict(plan), verdicts=[asdict(v) for v in found])
    rep["passed"] = all(v.flat for v in found) and all(c["ok"] for c in rep["checks"]) and \
        all(c["ok"] for d in rep["deals"] for c in d["checks"]) and bool(rep["deals"])
    path = write(rep, out)
    say(f"report: {path}")
    if result is not None:
        recorder.write(result, result_figures(rep))
    for v in found:
        if not v.flat:
            say(f"NOT FLAT: {v.series}: {v.detail}")
    say("PASSED" if rep["passed"] else "FAILED")
    sys.exit(0 if rep["passed"] else 1)


if __name__ == "__main__":
    main()
