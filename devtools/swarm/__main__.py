"""`python -m devtools.swarm` (`make swarm`): restart the processes in the mode's environment,
one swarm, its report; the processes keep running. The usage is the package docstring."""

from __future__ import annotations

import argparse
import asyncio
import shlex
import sys

import devtools.swarm
from devtools import report
from devtools.swarm.cli import mode_env, procs
from devtools.swarm.config import ROOT, SwarmConfig, add_load_arguments, stamp
from devtools.swarm.run import run_swarm
from hotdeal_core.settings import load_settings


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m devtools.swarm",
                                description=devtools.swarm.__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--mode", choices=["redis", "db"], default="redis")
    add_load_arguments(p)
    p.add_argument("--command", default=shlex.join(["python", "-m", "devtools.swarm",
                                                     *sys.argv[1:]]))
    a = p.parse_args()
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
    print(f"[swarm] report in {out}; the processes keep running in {a.mode} mode "
          "(`make down` stops them)")
    sys.exit(0 if rep["passed"] else 1)


if __name__ == "__main__":
    main()
