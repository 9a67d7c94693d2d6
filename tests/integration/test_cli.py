"""The `hotdeal` CLI against real Postgres and Redis, through typer's CliRunner.

Plain `def` tests: each command runs its own `asyncio.run`. A reconciler of a concurrent
run may share the test database, so the tests that need a deal to stay ENDED hold a
`FOR KEY SHARE` lock on its row: ending it still works, flushing it (`FOR UPDATE`) waits.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from typing import Any

from redis import Redis
from redis.asyncio import Redis as AsyncRedis
from sqlalchemy import select
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool
from typer.testing import CliRunner, Result

from hotdeal_cli.main import app
from hotdeal_core.db.engine import make_engine
from hotdeal_core.db.tables import hot_deals
from hotdeal_core.messaging.topics import Topics
from hotdeal_core.settings import Settings
from hotdeal_core.stock.redis_store import RedisStockStore, deal_keys
from hotdeal_core.usecases.context import Context
from hotdeal_core.usecases.flush import flush_deal
from tests.random_refs import random_name

# The test session's services (tests/conftest.py), whatever a .env would say.
ENV = {name: os.environ[name] for name in ("DATABASE_URL", "REDIS_URL", "KAFKA_TOPIC_PREFIX")}
runner = CliRunner()


def cli(*args: str | int, **env: str) -> Result:
    return runner.invoke(app, [str(a) for a in args], env={**ENV, **env})


def cli_json(*args: str | int, **env: str) -> Any:
    result = cli(*args, "--json", **env)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def flat(text: str) -> str:
    """Usage errors are drawn in a box and wrapped; compare their words only."""
    return " ".join(text.replace("│", " ").split())


def new_product(stock: int = 20, price: int = 900) -> int:
    return int(cli_json("product", "create", "--name", random_name("cli"), "--price", price,
                        "--stock", stock)["id"])


def new_deal(stock: int = 5, product_stock: int = 20) -> tuple[int, int]:
    pid = new_product(product_stock)
    started = cli_json("deal", "start", pid, "--stock", stock, "--duration", "10m")
    return pid, int(started["deal_id"])


def in_thread(work: Callable[[], Coroutine[Any, Any, None]]) -> threading.Thread:
    """Runs async work on its own loop beside the CLI's (which blocks this thread)."""
    thread = threading.Thread(target=lambda: asyncio.run(work()), daemon=True)
    thread.start()
    return thread


@contextmanager
def deal_row_locked(deal_id: int) -> Iterator[None]:
    locked, release = threading.Event(), threading.Event()

    async def hold() -> None:
        engine = create_async_engine(ENV["DATABASE_URL"], poolclass=NullPool)
        try:
            async with engine.begin() as conn:
                await conn.execute(select(hot_deals.c.id).where(hot_deals.c.id == deal_id)
                                   .with_for_update(read=True, key_share=True))
                locked.set()
                await asyncio.to_thread(release.wait, 60)
        finally:
            await engine.dispose()

    thread = in_thread(hold)
    try:
        assert locked.wait(10), "could not lock the deal row"
        yield
    finally:
        release.set()
        thread.join(10)


def test_product_create_and_show_as_json() -> None:
    name = random_name("cli")
    created = cli_json("product", "create", "--name", name, "--price", 1234, "--stock", 7)
    shown = cli_json("product", "show", created["id"])
    assert shown == {"id": created["id"], "name": name, "price": 1234, "stock": 7, "deal": None}
    human = cli("product", "create", "--name", random_name("cli"), "--price", 1, "--stock", 1)
    assert human.exit_code == 0 and human.stdout.strip().isdigit()


def test_deal_start_moves_stock_and_a_second_start_is_refused() -> None:
    pid, deal_id = new_deal(stock=5, product_stock=20)
    shown = cli_json("product", "show", pid)
    assert shown["stock"] == 15
    assert shown["deal"]["id"] == deal_id and shown["deal"]["status"] == "ACTIVE"
    assert shown["deal"]["remaining"] == 5 and shown["deal"]["ends_at"]
    again = cli("deal", "start", pid, "--stock", 1)
    assert again.exit_code == 1
    assert again.stderr.startswith("error: deal_already_active: ")
    as_json = cli("deal", "start", pid, "--stock", 1, "--json")
    assert as_json.exit_code == 1
    assert json.loads(as_json.stdout)["error"]["code"] == "deal_already_active"


def test_a_bad_duration_is_a_usage_error() -> None:
    pid = new_product()
    result = cli("deal", "start", pid, "--stock", 1, "--duration", "ten minutes")
    assert result.exit_code == 2
    assert "not a duration" in flat(result.output)
    assert cli_json("product", "show", pid)["deal"] is None


def test_audit_holds_right_after_start() -> None:
    pid, deal_id = new_deal(stock=4)
    result = cli("deal", "audit", pid)
    assert result.exit_code == 0, result.output
    assert "initial = on_sale + pending + confirmed + in_flight" in result.stdout
    assert result.stdout.rstrip().endswith("holds")
    audit = cli_json("deal", "audit", pid)
    assert audit["deal_id"] == deal_id and audit["balanced"] is True
    assert (audit["initial"], audit["on_sale"], audit["pending"]) == (4, 4, 0)


def test_stop_ends_the_deal_and_wait_times_out_without_a_reconciler() -> None:
    pid, deal_id = new_deal(stock=3)
    with deal_row_locked(deal_id):
        stopped = cli_json("deal", "stop", pid)
        assert stopped["deal_id"] == deal_id and stopped["ended_now"] is True
        status = cli_json("deal", "status", pid)
        assert status["status"] == "ENDED" and status["remaining"] == 3
        waited = cli("deal", "stop", pid, "--wait", "--timeout", "1")
        assert waited.exit_code == 1
        assert "reconcile_timeout" in waited.stderr and "reconciler" in waited.stderr
        assert "make up" in waited.stderr


def test_stop_wait_prints_the_final_audit_once_reconciled() -> None:
    pid, deal_id = new_deal(stock=6, product_stock=10)

    async def reconcile_when_ended() -> None:  # stands in for the reconciler process
        settings = Settings(_env_file=None, database_url=ENV["DATABASE_URL"],
                            redis_url=ENV["REDIS_URL"],
                            kafka_topic_prefix=ENV["KAFKA_TOPIC_PREFIX"])
        engine, redis = make_engine(settings, pool_size=1), AsyncRedis.from_url(settings.redis_url)
        ctx = Context(engine=engine, stock=RedisStockStore(redis), settings=settings,
                      topics=Topics(settings.kafka_topic_prefix))
        try:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                async with engine.connect() as conn:
                    status = (await conn.execute(select(hot_deals.c.status).where(
                        hot_deals.c.id == deal_id))).scalar_one()
                if status != "ACTIVE":
                    await flush_deal(ctx, deal_id)
                    return
                await asyncio.sleep(0.05)
        finally:
            await redis.aclose()
            await engine.dispose()

    thread = in_thread(reconcile_when_ended)
    result = cli("deal", "stop", pid, "--wait", "--timeout", "30")
    thread.join(10)
    assert result.exit_code == 0, result.output
    assert result.stdout.rstrip().endswith("holds")
    assert cli_json("deal", "status", pid)["status"] == "RECONCILED"
    assert cli_json("product", "show", pid)["stock"] == 10


def test_recover_rebuilds_lost_redis_state() -> None:
    pid, deal_id = new_deal(stock=5)
    with Redis.from_url(ENV["REDIS_URL"]) as redis:
        assert redis.delete(*deal_keys(pid)) > 0
    recovered = cli_json("deal", "recover", pid)
    assert recovered["deal_id"] == deal_id and recovered["epoch"] >= 2
    assert (recovered["stock"], recovered["reservations"]) == (5, 0)
    human = cli("deal", "recover", pid)
    assert human.exit_code == 0 and "reservation(s) rebuilt" in human.stdout
    assert cli("deal", "audit", pid).exit_code == 0
    status = cli_json("deal", "status", pid)
    assert status["status"] == "ACTIVE" and status["remaining"] == 5 and status["balanced"]


def test_a_dependency_down_exits_3_without_a_traceback() -> None:
    pid, _ = new_deal(stock=2)
    redis_down = cli("deal", "status", pid, REDIS_URL="redis://127.0.0.1:1/0")
    assert redis_down.exit_code == 3, redis_down.output
    assert redis_down.stderr.startswith("error: redis_unavailable: ")
    assert "make infra-up" in redis_down.stderr and "Traceback" not in redis_down.output
    pg_down = cli("deal", "status", pid, "--json",
                  DATABASE_URL="postgresql+asyncpg://hotdeal:hotdeal@127.0.0.1:1/hotdeal_test")
    assert pg_down.exit_code == 3, pg_down.output
    error = json.loads(pg_down.stdout)["error"]
    assert error["code"] == "postgres_unavailable" and "make infra-up" in error["message"]
    assert "Traceback" not in pg_down.output
