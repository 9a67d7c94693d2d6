"""A relay stopped while its producer is still bootstrapping (an API shut down right after
it started) leaves no Kafka connection open: aiokafka cancelled mid-start would leak the
connection it bootstraps through, so the relay lets the start end first."""

from __future__ import annotations

import asyncio
from typing import Any

import aiokafka.client
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from hotdeal_core.messaging.relay import OutboxRelay, make_producer
from hotdeal_core.settings import Settings
from tests.waiting import eventually


async def test_a_relay_stopped_mid_bootstrap_leaves_no_kafka_connection_open(
        engine: AsyncEngine, settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    conns: list[Any] = []
    in_bootstrap, release = asyncio.Event(), asyncio.Event()
    real_create_conn = aiokafka.client.create_conn

    async def gated_create_conn(*args: Any, **kwargs: Any) -> Any:
        conn = await real_create_conn(*args, **kwargs)
        conns.append(conn)
        if len(conns) == 1:  # the bootstrap connection: hold its metadata request
            send = conn.send

            async def held_send(request: Any, *a: Any, **kw: Any) -> Any:
                in_bootstrap.set()
                await release.wait()
                return await send(request, *a, **kw)
            conn.send = held_send
        return conn

    monkeypatch.setattr(aiokafka.client, "create_conn", gated_create_conn)
    relay = OutboxRelay(engine, make_producer(settings.kafka_bootstrap_servers))
    relay.start()
    task = relay._task
    assert task is not None
    await asyncio.wait_for(in_bootstrap.wait(), 30)
    stopping = asyncio.create_task(relay.stop())
    async def cancelled() -> bool:
        return task.done() or task.cancelling() > 0

    await eventually(cancelled, 10, "the relay's task to be cancelled")
    release.set()
    await asyncio.wait_for(stopping, 30)
    assert conns and all(not c.connected() for c in conns), "a Kafka connection left open"
