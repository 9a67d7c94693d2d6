"""`make chaos [SHORT=1] [CLUSTER=1]`: python -m devtools.chaos [--short] [--cluster]
[--only ...] [--keep]."""

from __future__ import annotations

import argparse
import asyncio
import fcntl
import shlex
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from benchmarks.results import Recorder
from devtools import report as swarm_report
from devtools.chaos import cluster, report
from devtools.chaos.faults import Stack, faults
from devtools.chaos.run import Plan, chaos, default_out, say, set_up, tear_down

#: The cluster run's fault names (--only), as cluster.cluster_faults names them.
CLUSTER_FAULTS = ["api-1", "api-2", "stock-worker-1", "stock-worker-2", "reconciler-1",
                  "reconciler-2", "kafka", "redis-master", "redis-promoted"]


def hold_the_stack(stack: Stack) -> IO[str]:
    """One chaos run at a time on these ports: a second one (another shell, a test suite
    run meanwhile, another checkout) would kill the first one's services."""
    lock = Path(tempfile.gettempdir(), f"hotdeal-chaos-{stack.pg_port}.lock").open(  # noqa: SIM115
        "w")  # held for the whole run: closed by the caller
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        say("another chaos run holds the stack; waiting for it to end")
        fcntl.flock(lock, fcntl.LOCK_EX)
    return lock


async def _cluster_run(a: argparse.Namespace, only: set[str] | None) -> dict[str, Any]:
    stack = cluster.ClusterStack()
    lock = hold_the_stack(stack)
    try:
        say(f"cluster services of the run (Redis Cluster :{stack.redis_port}+8, Kafka "
            f"{stack.kafka}, Postgres :{stack.pg_port} db {stack.database}) in "
            f"{stack.infra_dir}")
        await cluster.set_up(stack)
        say(f"processes up (2 of each); buyers' address (HAProxy) {stack.api_url}")
        rep = await chaos(stack, Plan.of(a.short, cluster=True), only,
                          lambda product: cluster.cluster_faults(stack, product))
        rep["machine"] = await swarm_report.machine_info(
            stack.database_url, f"redis://127.0.0.1:{stack.redis_port}/0")
        jars = sorted((stack.infra_dir / "kafka" / "libs").glob("kafka_2.*-*.jar"))
        if jars:  # machine_info reads `make up`'s jars; the run fetched its own
            rep["machine"]["kafka"] = jars[0].stem.split("-", 1)[1]
        rep["topology"] = ("2 order APIs behind HAProxy, 2 stock workers, 2 reconcilers, "
                           "3 Kafka brokers, Redis Cluster of 3 masters x 2 replicas")
    finally:
        if not a.keep:
            say("stopping the run's processes and cluster services (Postgres stays)")
            for problem in await cluster.tear_down(stack):
                say(problem)
        lock.close()
    return rep


async def main_async(a: argparse.Namespace) -> int:
    only = set(a.only.split(",")) if a.only else None
    started = datetime.now(UTC).isoformat(timespec="seconds")
    recorder = Recorder(a.command)
    if a.cluster:
        rep = await _cluster_run(a, only)
    else:
        stack = Stack()
        lock = hold_the_stack(stack)
        try:
            await set_up(stack)
            rep = await chaos(stack, Plan.of(a.short), only)
            rep["machine"] = await swarm_report.machine_info(
                stack.database_url, f"redis://127.0.0.1:{stack.redis_port}/0")
        finally:
            if not a.keep:
                say("stopping the run's processes and services")
                await tear_down(stack)
            lock.close()
    rep.update(command=a.command, started_at=started)
    md = report.write(rep, a.out)
    print(md.read_text())
    say(f"report in {md} (and report.json): {'PASS' if rep['passed'] else 'FAIL'}")
    if a.result is not None:
        recorder.write(a.result, result_figures(rep))
    return 0 if rep["passed"] else 1


_FAULT_KEYS = ("name", "kill_at", "window_s", "attempts", "failed", "failed_by_reason",
               "answered_after_s", "accepting_after_s", "first_202_answered_after_s",
               "longest_gap_without_202_s", "restart_exit")


def result_figures(rep: dict[str, Any]) -> dict[str, Any]:
    """The run's figures for its result file: the whole run, each fault, the checks."""
    return {"passed": rep["passed"], "plan": rep["plan"], "topology": rep.get("topology"),
            "duration_s": rep["duration_s"], "accepted": rep["accepted"],
            "payments": rep["payments"], "whole_run": rep["whole_run"],
            "during_faults": rep.get("during_faults"),
            "faults": [{k: f.get(k) for k in _FAULT_KEYS} | {"extra": f.get("extra")}
                       for f in rep["faults"]],
            "checks": [{"name": c["name"], "ok": c["ok"], "detail": c["detail"]}
                       for c in rep["checks"]],
            "audit": rep["audit"], "machine": rep.get("machine")}


def main() -> None:
    single = [f.component for f in faults(Stack())]
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--short", action="store_true", help="small load, short holds (CI)")
    p.add_argument("--cluster", action="store_true",
                   help="the cluster stack of `make up CLUSTER=1` and its nine faults")
    p.add_argument("--only", help=f"comma-separated subset of {','.join(single)} "
                   f"(--cluster: {','.join(CLUSTER_FAULTS)})")
    p.add_argument("--keep", action="store_true", help="leave the run's stack running")
    p.add_argument("--result", type=Path, default=None,
                   help="also write the run's figures as a committed result file")
    p.add_argument("--out", type=Path, default=default_out())
    p.add_argument("--command", default=shlex.join(["python", "-m", "devtools.chaos",
                                                     *sys.argv[1:]]))
    a = p.parse_args()
    names = CLUSTER_FAULTS if a.cluster else single
    if a.only and not set(a.only.split(",")) <= set(names):
        p.error(f"--only takes {','.join(names)}")
    sys.exit(asyncio.run(main_async(a)))


if __name__ == "__main__":
    main()
