"""How long a consumer group stalls when a member dies, static membership or not, against a
real broker: `python -m devtools.membership [--session-ms 10000] [--rounds 3]`
(figures: docs/scaling.md, "Consumer group membership")."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import sys
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from hotdeal_core.messaging.admin import server_list
from hotdeal_core.messaging.membership import membership
from hotdeal_core.settings import Settings

PARTITIONS = 6
TICK = 0.05  # one record per partition this often


def _say(**event: Any) -> None:
    print(json.dumps({**event, "t": time.time()}), flush=True)


class _Report(ConsumerRebalanceListener):  # type: ignore[misc]
    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        _say(e="revoked", p=sorted(tp.partition for tp in revoked))

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        _say(e="assigned", p=sorted(tp.partition for tp in assigned))


async def run_member(topic: str, group: str) -> None:
    """The child: consume `topic` in `group`, one JSON line per assignment and record."""
    settings = Settings()
    consumer = AIOKafkaConsumer(bootstrap_servers=server_list(settings.kafka_bootstrap_servers),
                                group_id=group, auto_offset_reset="latest",
                                auto_commit_interval_ms=200,
                                **membership(settings, "probe"))
    consumer.subscribe([topic], listener=_Report())
    await consumer.start()
    _say(e="started")

    async def consume() -> None:
        async for record in consumer:
            _say(e="got", p=record.partition)
    consuming = asyncio.create_task(consume())
    # SIGTERM: a graceful stop (a dynamic member leaves the group, a static one does not).
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, consuming.cancel)
    with contextlib.suppress(asyncio.CancelledError):
        await consuming
    await consumer.stop()


@dataclass
class Member:
    """A member process and what it reported (lines of `run_member`)."""

    topic: str
    group: str
    instance_id: str | None
    session_ms: int
    events: list[dict[str, Any]] = field(default_factory=list)
    proc: asyncio.subprocess.Process | None = None
    _reader: asyncio.Task[None] | None = None

    async def start(self) -> Member:
        env = {**os.environ, "KAFKA_SESSION_TIMEOUT_MS": str(self.session_ms)}
        env.pop("CONSUMER_INSTANCE_ID", None)
        if self.instance_id:
            env["CONSUMER_INSTANCE_ID"] = self.instance_id
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "devtools.membership", "member", self.topic, self.group,
            env=env, stdout=asyncio.subprocess.PIPE, start_new_session=True)
        self._reader = asyncio.create_task(self._read())
        return self

    async def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        async for line in self.proc.stdout:
            with contextlib.suppress(ValueError):
                self.events.append(json.loads(line))

    def assigned(self) -> set[int]:
        """The partitions it holds now (its last assignment, unless revoked since)."""
        held: set[int] = set()
        for e in self.events:
            if e["e"] == "assigned":
                held = set(e["p"])
            elif e["e"] == "revoked":
                held -= set(e["p"])
        return held

    def rebalanced_since(self, t: float) -> bool:
        return any(e["e"] in ("assigned", "revoked") and e["t"] > t for e in self.events)

    def consumed_since(self, t: float) -> set[int]:
        return {e["p"] for e in self.events if e["e"] == "got" and e["t"] > t}

    async def kill(self, sig: signal.Signals = signal.SIGKILL) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.send_signal(sig)
            await self.proc.wait()
        if self._reader is not None:
            await self._reader


@contextlib.asynccontextmanager
async def fed_topic(settings: Settings) -> Any:
    """A new topic of PARTITIONS, fed one record per partition every TICK; yields its name."""
    topic = f"{settings.kafka_topic_prefix}membership-{uuid.uuid4().hex[:8]}"
    servers = server_list(settings.kafka_bootstrap_servers)
    admin = AIOKafkaAdminClient(bootstrap_servers=servers)
    await admin.start()
    await admin.create_topics([NewTopic(topic, PARTITIONS, 1)])
    producer = AIOKafkaProducer(bootstrap_servers=servers, linger_ms=0)
    await producer.start()

    async def feed() -> None:
        while True:
            await asyncio.gather(*[await producer.send(topic, b"x", partition=p)
                                   for p in range(PARTITIONS)])
            await asyncio.sleep(TICK)  # the feed's pace
    feeding = asyncio.create_task(feed())
    try:
        yield topic
    finally:
        feeding.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await feeding
        await producer.stop()
        with contextlib.suppress(Exception):
            await admin.delete_topics([topic])
        await admin.close()


async def until(probe: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not probe():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.02)


async def settled_pair(topic: str, group: str, static: bool, session_ms: int,
                       ) -> tuple[Member, Member]:
    """Two members holding every partition between them, both consuming."""
    a, b = (Member(topic, group, f"probe-{n}" if static else None, session_ms)
            for n in (1, 2))
    await a.start()
    await until(lambda: len(a.assigned()) == PARTITIONS, 60, "the first member's assignment")
    await b.start()
    await until(lambda: a.assigned() | b.assigned() == set(range(PARTITIONS))
                and a.assigned() and b.assigned(), 60, "the pair's assignment")
    now = time.time()
    await until(lambda: a.consumed_since(now) and b.consumed_since(now), 30, "consumption")
    return a, b


CASES = {"restart": signal.SIGKILL, "kill": signal.SIGKILL, "stop": signal.SIGTERM}


async def measure(settings: Settings, static: bool, case: str, session_ms: int,
                  ) -> dict[str, Any]:
    """End one of a settled pair (a CASES key): seconds until all its partitions are
    consumed again, and whether the other member went through a rebalance."""
    async with fed_topic(settings) as topic:
        group = f"{topic}-group"
        a, b = await settled_pair(topic, group, static, session_ms)
        held, killed_at = a.assigned(), time.time()
        await a.kill(CASES[case])
        again = await Member(topic, group, a.instance_id, session_ms).start() \
            if case == "restart" else None
        members = [b] + ([again] if again else [])

        def resumed() -> bool:
            return held <= set().union(*(m.consumed_since(killed_at) for m in members))
        try:
            await until(resumed, session_ms / 1000 * 3 + 30, "the partitions to resume")
            gaps = [min(e["t"] for m in members for e in m.events
                        if e["e"] == "got" and e["p"] == p and e["t"] > killed_at)
                    - killed_at for p in held]
            return {"static": static, "case": case, "session_ms": session_ms,
                    "stall_s": round(max(gaps), 2),
                    "other_rebalanced": b.rebalanced_since(killed_at)}
        finally:
            for m in members:
                await m.kill()


async def measure_all(session_ms: int, rounds: int) -> None:
    settings = Settings()
    for case in CASES:
        for static in (True, False):
            for _ in range(rounds):
                print(json.dumps(await measure(settings, static, case, session_ms)),
                      flush=True)


def main() -> None:
    if sys.argv[1:2] == ["member"]:
        asyncio.run(run_member(sys.argv[2], sys.argv[3]))
        return
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--session-ms", type=int, default=Settings().kafka_session_timeout_ms)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    asyncio.run(measure_all(args.session_ms, args.rounds))


if __name__ == "__main__":
    main()
