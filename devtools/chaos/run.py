"""The chaos run: a steady swarm, each component killed and restarted in turn (or on a clock:
`Plan.every`), then every promise checked (devtools.chaos.checks); report.md + report.json.
`python -m devtools.chaos [--short] [--cluster] [--only ...] [--keep] [--result PATH]`."""

from __future__ import annotations

import asyncio
import shlex
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from sqlalchemy.ext.asyncio import create_async_engine

from devtools.chaos import checks
from devtools.chaos.faults import (
    INFRA_DOWN,
    INFRA_UP,
    PROCS_DOWN,
    PROCS_UP,
    ROOT,
    Fault,
    Stack,
    faults,
    run,
)
from devtools.chaos.load import Buyers, Ledger, LoadConfig
from devtools.chaos.timeline import FaultRun, first_accept_after, run_figures, window_figures
from devtools.swarm import hotdeal
from hotdeal_core.settings import DEV_WEBHOOK_SECRET, load_settings
from loadtest.buyers import BuyerAuth


@dataclass(frozen=True)
class Plan:
    buyers: int
    warmup: float  # steady load before the first fault
    down: float  # how long each component stays dead before its restart
    after: float  # steady load after each recovery
    stock: int = 200_000
    per_user_limit: int = 5
    # Seconds between two kills, whatever the restarts take (0: each fault waits for the
    # previous one's recovery and `after` seconds of quiet). Faults of one family (the two
    # API replicas, the two Redis masters...) never overlap: the later one waits.
    every: float = 0.0

    @classmethod
    def of(cls, short: bool, cluster: bool = False) -> Plan:
        if cluster:  # nine faults in 80 s (issue 21): a kill every 8 s, each dead 2 s
            return cls(buyers=8, warmup=3, down=1, after=2, every=4) if short else \
                cls(buyers=30, warmup=5, down=2, after=3, every=8)
        return cls(buyers=8, warmup=3, down=1, after=3) if short else \
            cls(buyers=30, warmup=10, down=5, after=10)


def say(msg: str) -> None:
    print(f"[chaos] {msg}", flush=True)


async def _must(stack: Stack, *cmd: str) -> None:
    code, out = await run(stack, *cmd)
    if code != 0:
        raise RuntimeError(f"{shlex.join(cmd)} exited {code}:\n{out[-3000:]}")


async def set_up(stack: Stack) -> None:
    say(f"services of the run (ports pg {stack.pg_port}, redis {stack.redis_port}, "
        f"kafka {stack.kafka_port}) in {stack.infra_dir}")
    await _must(stack, *INFRA_UP)
    await _must(stack, sys.executable, "-m", "hotdeal_core.db.migrate")
    await _must(stack, *PROCS_UP, str(stack.run_dir))
    say(f"processes up; order API at {stack.api_url}")


async def tear_down(stack: Stack) -> None:
    for cmd in ((*PROCS_DOWN, str(stack.run_dir)), INFRA_DOWN):
        code, out = await run(stack, *cmd)
        if code != 0:
            say(f"{shlex.join(cmd)} exited {code}: {out[-500:]}")


async def _poll(probe: Any, stack: Stack, ledger: Ledger, deadline: float) -> float | None:
    while time.monotonic() < deadline:
        if await probe(stack):
            return ledger.now()
        await asyncio.sleep(0.1)
    return None


async def _hold(seconds: float, buyers_task: asyncio.Task[None]) -> None:
    """Let the load run; a crashed load generator stops the run at once."""
    done, _ = await asyncio.wait({buyers_task}, timeout=seconds)
    if done:
        buyers_task.result()
        raise RuntimeError("the buyers stopped before the run's end")


async def inject(fault: Fault, stack: Stack, ledger: Ledger, plan: Plan,
                 buyers_task: asyncio.Task[None]) -> FaultRun:
    f = FaultRun(fault.name, fault.component, fault.how, shlex.join(fault.restart))
    say(f"{fault.name}: {fault.how}")
    if fault.aim is not None:
        await fault.aim(stack)
    f.kill_at = ledger.now()
    await fault.kill(stack)
    await _hold(plan.down, buyers_task)
    deadline = time.monotonic() + 120
    if fault.before_restart is not None:
        ready = await _poll(fault.before_restart, stack, ledger, deadline)
        f.extra["ready_to_restart_after_s"] = None if ready is None \
            else round(ready - f.kill_at, 2)
        say(f"{fault.name}: ready to restart after "
            f"{'never' if ready is None else f'{ready - f.kill_at:.1f} s'}")
    f.restart_at = ledger.now()
    say(f"{fault.name}: restarting with `{f.restart_command}`")
    restart = asyncio.create_task(run(stack, *fault.restart, timeout=120))
    f.answered_at = await _poll(fault.answers, stack, ledger, deadline)
    f.restart_exit, out = await restart
    f.restarted_at = ledger.now()
    f.restart_output = out[-2000:]
    if f.restart_exit != 0:
        say(f"{fault.name}: the restart command exited {f.restart_exit}:\n{out[-1500:]}")
    f.accepting_at = first_accept_after(ledger.accepted_at, f.kill_at)
    while f.accepting_at is None and time.monotonic() < deadline:
        await _hold(0.1, buyers_task)
        f.accepting_at = first_accept_after(ledger.accepted_at, f.kill_at)
    f.window_end = max(x for x in (f.restarted_at, f.answered_at, f.accepting_at)
                       if x is not None)
    say(f"{fault.name}: answered after "
        f"{'never' if f.answered_at is None else f'{f.answered_at - f.kill_at:.1f} s'}, "
        f"orders accepted again after "
        f"{'never' if f.accepting_at is None else f'{f.accepting_at - f.kill_at:.1f} s'}")
    if not plan.every:
        await _hold(plan.after, buyers_task)
    return f


# The cluster run's order on a schedule: each family's second fault comes after the other
# families' first, so a replica is back before its twin dies.
# The first Redis master dies early enough that it is back (a replica of its successor, as
# the scenario wants) before its successor's turn.
SCHEDULE = ("api-1", "stock-worker-1", "reconciler-1", "redis-master", "kafka", "api-2",
            "stock-worker-2", "reconciler-2", "redis-promoted")


def family(component: str) -> str:
    """api-1 -> api, redis-promoted -> redis: faults that must not overlap."""
    return component.rsplit("-", 1)[0] if component[-1].isdigit() else component.split("-")[0]


async def on_schedule(faults: list[Fault], stack: Stack, ledger: Ledger, plan: Plan,
                      buyers_task: asyncio.Task[None]) -> list[FaultRun]:
    """A kill every `plan.every` s from the warm-up's end, the restarts running meanwhile; a
    fault whose family's previous one is not over yet waits for it. Then the tail's quiet."""
    order = sorted(faults, key=lambda f: SCHEDULE.index(f.component)
                   if f.component in SCHEDULE else len(SCHEDULE))
    last: dict[str, asyncio.Task[FaultRun]] = {}
    tasks: list[asyncio.Task[FaultRun]] = []
    start = ledger.now()
    for i, fault in enumerate(order):
        await _hold(max(0.0, start + i * plan.every - ledger.now()), buyers_task)
        previous = last.get(family(fault.component))
        if previous is not None and not previous.done():
            say(f"{fault.name}: waiting for {previous.get_name()} to be over")
            await asyncio.wait({previous, buyers_task}, return_when=asyncio.FIRST_COMPLETED)
        task = asyncio.create_task(inject(fault, stack, ledger, plan, buyers_task),
                                   name=fault.name)
        last[family(fault.component)] = task
        tasks.append(task)
    runs = list(await asyncio.gather(*tasks))
    await _hold(plan.after, buyers_task)
    return runs


async def chaos(stack: Stack, plan: Plan, only: set[str] | None,
                faults_of: Callable[[int], list[Fault]] | None = None) -> dict[str, Any]:
    """The run; `faults_of(product id)`: the faults in turn (default: the single-node ones)."""
    env = stack.env()
    product = hotdeal("product", "create", "--name", "chaos", "--price", "1000",
                      "--stock", str(plan.stock), env=env)
    deal = hotdeal("deal", "start", str(product["id"]), "--stock", str(plan.stock),
                   "--per-user-limit", str(plan.per_user_limit), "--opening-window", "0",
                   env=env)
    ledger = Ledger()
    cfg = LoadConfig(stack.api_url, int(product["id"]), env.get(
        "PAYMENT_WEBHOOK_SECRET", DEV_WEBHOOK_SECRET), buyers=plan.buyers)
    # The run's API verifies with the development secret it allows (Stack.env); the faults'
    # restarts make the run's length unknown, so the tokens live a day.
    auth = BuyerAuth.from_settings(None, load_settings().model_copy(
        update={"allow_dev_secrets": env["ALLOW_DEV_SECRETS"] == "true"}))
    buyers = Buyers(cfg, ledger, auth)
    buyers_task = asyncio.create_task(buyers.run())
    runs: list[FaultRun] = []
    try:
        say(f"{plan.buyers} buyers on deal {deal['deal_id']}; warming up {plan.warmup:g} s")
        await _hold(plan.warmup, buyers_task)
        chosen = [f for f in (faults_of or (lambda _: faults(stack)))(int(product["id"]))
                  if only is None or f.component in only]
        if plan.every:
            runs = await on_schedule(chosen, stack, ledger, plan, buyers_task)
        for fault in chosen if not plan.every else []:
            runs.append(await inject(fault, stack, ledger, plan, buyers_task))
    finally:
        buyers.stop()
        await asyncio.wait_for(buyers_task, 180)
    say(f"load stopped: {len(ledger.accepted):,} orders accepted, "
        f"{len(ledger.payments):,} payments; stopping the deal")
    audit = hotdeal("deal", "stop", str(product["id"]), "--wait", "--timeout", "180",
                    env=env)["audit"]
    engine = create_async_engine(stack.database_url, pool_size=2)
    try:
        found = await checks.verify(engine, int(deal["deal_id"]), ledger, audit,
                                    bootstrap=stack.kafka, topic="chaos.orders.v1",
                                    windows=[(f.name, f.kill_at, f.window_end) for f in runs])
    finally:
        await engine.dispose()
    return {"deal_id": deal["deal_id"], "product_id": product["id"], "plan": asdict(plan),
            "duration_s": round(ledger.now(), 1), "attempts": len(ledger.attempts),
            "accepted": len(ledger.accepted), "payments": len(ledger.payments),
            "whole_run": run_figures(ledger.attempts),
            # From the first kill to 10 s after the last: the attempts the faults could touch.
            "during_faults": run_figures([a for a in ledger.attempts if runs and runs[0].kill_at
                                          <= a.sent <= max(f.kill_at for f in runs) + 10]),
            "faults": [{**asdict(f), **window_figures(f, ledger.attempts, ledger.accepted_at)}
                       for f in runs],
            "checks": [asdict(c) for c in found], "audit": audit,
            "passed": all(c.ok for c in found) and all(
                f.restart_exit == 0 and f.answered_at is not None and f.accepting_at is not None
                for f in runs)}


def default_out() -> Path:
    return ROOT / "reports" / f"chaos-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}"
