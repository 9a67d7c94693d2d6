"""`make demo`: infrastructure, processes, one swarm and its report, in a few minutes; stops
only what it started. Exit 1 if the audit or a verification fails."""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import time
import traceback

from devtools import report
from devtools.procs import MODULES, Proc
from devtools.swarm import ROOT, RUN_DIR, SwarmConfig, procs, run_swarm, stamp
from hotdeal_core.settings import load_settings


def infra_state() -> dict[str, bool]:
    """Which services answer, from `scripts/infra.sh status` (one line per service)."""
    out = subprocess.run([str(ROOT / "scripts" / "infra.sh"), "status"], cwd=ROOT, text=True,
                         capture_output=True, check=False).stdout
    return {line.split()[0]: not line.rstrip().endswith("down")
            for line in out.splitlines() if line.strip()}


def step(message: str) -> None:
    print(f"\n[demo] {message}", flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--users", type=int, default=100, help="virtual users and distinct buyers")
    p.add_argument("--duration", default="20s")
    p.add_argument("--stock", type=int, default=2000)
    p.add_argument("--limit", type=int, default=50, help="per-user limit")
    p.add_argument("--ttl", type=int, default=30,
                   help="reservation TTL (s) of the processes the demo starts")
    p.add_argument("--command", default="python -m devtools.demo")
    a = p.parse_args()
    began = time.monotonic()
    out = ROOT / "reports" / f"demo-{stamp()}"
    started_infra, started_procs, code = False, [], 1
    try:
        state = infra_state()
        if not all(state.values()) or len(state) < 3:
            step(f"starting the infrastructure (was: {state or 'nothing'})")
            started_infra = not any(state.values())
            subprocess.run([str(ROOT / "scripts" / "infra.sh"), "up"], cwd=ROOT, check=True)
        else:
            step("infrastructure already running: Postgres, Redis, Kafka (left running)")
        step("migrating the app database")
        subprocess.run([sys.executable, "-m", "hotdeal_core.db.migrate"], cwd=ROOT, check=True)
        started_procs = [n for n in MODULES if not Proc(n, RUN_DIR).alive()]
        step(f"starting processes: {', '.join(started_procs) or 'none (all running)'}")
        procs("up", {"RESERVATION_TTL_SECONDS": str(a.ttl)})
        ttl = (f"{a.ttl} s (set on the order API the demo started)"
               if "order-api" in started_procs else
               "the running order API's own setting (not restarted by the demo)")
        step(f"swarm: {a.users} users for {a.duration} on a deal of {a.stock:,} units, "
             f"per-user limit {a.limit}; reservation TTL {ttl}")
        run = run_swarm(SwarmConfig(out, "demo", "redis", users=a.users, duration=a.duration,
                                    stock=a.stock, per_user_limit=a.limit))
        run["reservation_ttl"] = ttl
        settings = load_settings()
        machine = asyncio.run(report.machine_info(settings.database_url, settings.redis_url))
        rep = report.build_report(run, machine, a.command)
        markdown = report.write_report(rep, out)
        charts = ", ".join(sorted(png.name for png in out.glob("chart-*.png")))
        step(f"report written to {out.relative_to(ROOT)}/ (report.md, report.json, "
             f"locust.html{', ' + charts if charts else ''})\n")
        print(markdown)
        code = 0 if rep["passed"] else 1
    except Exception:  # noqa: BLE001 - report any failure, then clean up and exit 1
        traceback.print_exc()
        print("[demo] FAILED (see above; process logs in .run/*.log)", file=sys.stderr)
    finally:
        for name in started_procs:
            Proc(name, RUN_DIR).stop()
            print(f"[demo] stopped {name}")
        if started_infra:
            subprocess.run([str(ROOT / "scripts" / "infra.sh"), "down"], cwd=ROOT, check=False)
    print(f"[demo] {'done' if code == 0 else 'FAILED'} in {time.monotonic() - began:.0f} s")
    sys.exit(code)


if __name__ == "__main__":
    main()
