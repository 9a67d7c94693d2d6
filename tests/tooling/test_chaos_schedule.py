"""The cluster chaos run's schedule: a kill every `every` seconds whatever the restarts
take, and a fault never overlapping the previous fault of its family."""

from __future__ import annotations

import asyncio

from devtools.chaos.faults import Fault, Stack
from devtools.chaos.load import Ledger
from devtools.chaos.run import Plan, family, on_schedule


async def _buyers(ledger: Ledger, stop: asyncio.Event) -> None:
    """Accepts an order every 5 ms (what inject waits for after each kill)."""
    while not stop.is_set():
        ledger.accepted_at.append(ledger.now())
        await asyncio.sleep(0.005)


def _fault(component: str, killed: dict[str, float], ledger: Ledger,
           back: asyncio.Event | None = None, signal: asyncio.Event | None = None) -> Fault:
    async def kill(_: Stack) -> None:
        killed[component] = ledger.now()
        if signal is not None:
            signal.set()

    async def answers(_: Stack) -> bool:
        return back is None or back.is_set()

    return Fault(component, component, "SIGKILL", ("true",), kill, answers)


def test_families_pair_the_replicas_of_one_component() -> None:
    assert [family(c) for c in ("api-1", "api-2", "stock-worker-2", "kafka", "redis-master",
                                "redis-promoted")] == \
        ["api", "api", "stock-worker", "kafka", "redis", "redis"]


async def test_kills_follow_the_clock_and_a_family_waits_for_its_previous_fault() -> None:
    ledger, stop = Ledger(), asyncio.Event()
    killed: dict[str, float] = {}
    slow_back = asyncio.Event()  # api-1 answers again only when the test says so
    kafka_killed = asyncio.Event()
    faults = [_fault(c, killed, ledger, slow_back if c == "api-1" else None,
                     kafka_killed if c == "kafka" else None)
              for c in ("api-2", "kafka", "api-1", "stock-worker-1")]
    plan = Plan(buyers=1, warmup=0, down=0.01, after=0.01, every=0.1)
    buyers = asyncio.create_task(_buyers(ledger, stop))
    schedule = asyncio.create_task(on_schedule(faults, Stack(), ledger, plan, buyers))
    # The schedule's order: api-1, stock-worker-1, kafka, api-2.
    await asyncio.wait_for(kafka_killed.wait(), 10)
    api_2_slot = killed["api-1"] + 3 * plan.every
    await asyncio.sleep(max(0.0, api_2_slot + 0.05 - ledger.now()))  # past api-2's slot...
    assert "api-2" not in killed  # ...but api-1 is still down: api-2 waits
    slow_back.set()
    runs = await asyncio.wait_for(schedule, 10)
    stop.set()
    await buyers
    assert [r.component for r in runs] == ["api-1", "stock-worker-1", "kafka", "api-2"]
    assert 0.08 <= killed["stock-worker-1"] - killed["api-1"] <= 0.2
    assert 0.08 <= killed["kafka"] - killed["stock-worker-1"] <= 0.2
    assert killed["api-2"] >= runs[0].window_end  # after api-1 was over
