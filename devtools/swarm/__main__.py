"""`python -m devtools.swarm` (`make swarm`): restart the processes in the mode's environment,
one swarm, its report; the processes keep running. The usage is the package docstring."""

from __future__ import annotations

import argparse
import asyncio
import os
import shlex
import sys
from pathlib import Path
from typing import Any

import devtools.swarm
from benchmarks import history
from benchmarks.results import Recorder, swarm_figures
from devtools import report
from devtools.swarm.cli import mode_env, procs
from devtools.swarm.config import ROOT, SwarmConfig, add_load_arguments, stamp
from devtools.swarm.run import run_swarm
from hotdeal_core.settings import load_settings
from loadtest.shapes import SpikeConfig, StepConfig


def shape_figures(shape: str, users: int, csv: Path) -> dict[str, Any]:
    """The spike's figures at its peak, or each step's, from locust's full history (the
    shape's knobs as run_swarm passes them to locust: its peak / top is --users)."""
    env = {**os.environ, "HOTDEAL_SPIKE_USERS": str(users), "HOTDEAL_STEP_MAX": str(users)}
    if shape == "spike":
        return {"at_peak": history.spike_figures(history.read(csv),
                                                 SpikeConfig.from_env(env).peak)}
    if shape == "step":
        s = StepConfig.from_env(env)
        return {"steps": history.step_figures(history.read(csv), s.start, s.step, s.seconds,
                                              s.max_users)}
    return {}


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m devtools.swarm",
                                description=devtools.swarm.__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--mode", choices=["redis", "db"], default="redis")
    add_load_arguments(p)
    p.add_argument("--command", default=shlex.join(["python", "-m", "devtools.swarm",
                                                     *sys.argv[1:]]))
    p.add_argument("--result", type=Path, help="also write a small result file here "
                   "(benchmarks/results.py), e.g. docs/scenarios/results/<name>.json")
    a = p.parse_args()
    recorder = Recorder(a.command)
    out = ROOT / "reports" / f"swarm-{a.mode}-{stamp()}"
    procs("down")
    procs("up", mode_env(a.mode))
    run = run_swarm(SwarmConfig(out, f"swarm-{a.mode}", a.mode, users=a.users,
                                buyers=a.buyers, duration=a.duration, shape=a.shape, stock=a.stock,
                                per_user_limit=a.limit, processes=a.processes))
    settings = load_settings()
    machine = asyncio.run(report.machine_info(settings.database_url, settings.redis_url))
    rep = report.build_report(run, machine, a.command, title=f"hotdeal swarm ({a.mode} stock)")
    print(report.write_report(rep, out))
    if a.result:
        shape = shape_figures(a.shape, a.users, out / "locust_stats_history.csv")
        recorder.write(a.result, {"versions": machine, **swarm_figures(run), **shape})
    print(f"[swarm] report in {out}; the processes keep running in {a.mode} mode "
          "(`make down` stops them)")
    sys.exit(0 if rep["passed"] else 1)


if __name__ == "__main__":
    main()
