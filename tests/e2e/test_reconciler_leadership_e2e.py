"""Two reconciler processes: each duty is led by one of them; when the leader is killed
(SIGKILL: no goodbye, the kernel closes its sockets), the other takes every duty over."""

from __future__ import annotations

import os
import signal
import uuid
from pathlib import Path

from devtools.procs import Proc
from tests.e2e.conftest import base_env, eventually

DUTIES = ("end-due-deals", "recover-lost-redis-state", "release-orphans", "flush-stuck-deals")


def _led(proc: Proc, prefix: str) -> set[str]:
    """The duties a process logged it leads (each lock is named prefix + duty)."""
    text = proc.log.read_text(errors="replace") if proc.log.exists() else ""
    return {d for d in DUTIES if f"leading duty {prefix}{d}" in text}


async def test_the_second_reconciler_takes_the_duties_over_when_the_first_is_killed(
        tmp_path: Path) -> None:
    # A prefix of its own: the duty locks are per prefix, so the stack's reconciler (if it
    # runs) competes with neither.
    prefix = f"{os.environ['KAFKA_TOPIC_PREFIX']}lead{uuid.uuid4().hex[:6]}."
    env = {**base_env(), "KAFKA_TOPIC_PREFIX": prefix}
    a, b = (Proc(f"reconciler-{n}", tmp_path, env, module="reconciler") for n in "ab")
    try:
        for p in (a, b):
            p.start()
        for p in (a, b):
            p.wait_ready(90)

        async def split() -> bool:  # every duty led, and by one process only
            led_a, led_b = _led(a, prefix), _led(b, prefix)
            return led_a | led_b == set(DUTIES) and not led_a & led_b
        await eventually(split, 30, "every duty led by exactly one reconciler")
        leader, other = (a, b) if _led(a, prefix) else (b, a)
        leader.signal(signal.SIGKILL)  # it leads at least one duty

        async def taken_over() -> bool:
            return _led(other, prefix) == set(DUTIES)
        await eventually(taken_over, 30, "the survivor to lead every duty")
    finally:
        for p in (a, b):
            p.stop(timeout=30)
