"""Shared fixtures. Tests run against the real Postgres, Redis and Kafka started by
`make test` (scripts/infra.sh); the test database, Redis db 1 and the "test." topic prefix
keep them apart from the demo's data. `make test-cluster` runs the Redis tiers against a
Redis Cluster of their own instead (REDIS_CLUSTER=true, on REDIS_CLUSTER_TEST_PORT: a cluster
has only db 0, so a dedicated cluster is what keeps the tests' keys apart)."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from redis.asyncio import Redis, RedisCluster
from sqlalchemy.ext.asyncio import AsyncEngine

from hotdeal_core.db.engine import make_engine
from hotdeal_core.messaging.topics import Topics
from hotdeal_core.settings import (
    PG_PORT,
    REDIS_PORT,
    Settings,
    local_database_url,
    local_redis_url,
)
from hotdeal_core.stock.client import (
    close_redis,
    make_redis,
    replica_acks,
)
from hotdeal_core.stock.redis_store import RedisStockStore
from hotdeal_core.usecases.context import Context
from hotdeal_core.usecases.products import create_product
from tests.random_refs import random_name

# The services of `make infra-up` (on the scripts' port overrides, if any).
os.environ.setdefault("DATABASE_URL", local_database_url(
    "hotdeal_test", port=int(os.environ.get("HOTDEAL_PG_PORT", PG_PORT))))
os.environ.setdefault("REDIS_URL", local_redis_url(
    1, port=int(os.environ.get("HOTDEAL_REDIS_PORT", REDIS_PORT))))
os.environ.setdefault("ALLOW_DEV_SECRETS", "true")
# One topic namespace per test session: two sessions on one broker (a developer's and a
# helper's) must not share consumer groups' partitions.
os.environ["KAFKA_TOPIC_PREFIX"] = (
    f"{os.environ.get('KAFKA_TOPIC_PREFIX', 'test.')}{uuid.uuid4().hex[:8]}.")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The folder names the tier: tests/unit -> unit, and so on."""
    for item in items:
        for tier in ("unit", "tooling", "integration", "e2e"):
            if f"tests/{tier}/" in str(item.path).replace(os.sep, "/"):
                item.add_marker(getattr(pytest.mark, tier))


@pytest.fixture(scope="session")
def settings() -> Settings:
    return Settings(_env_file=None)


@pytest.fixture(scope="session")
async def engine(settings: Settings) -> AsyncIterator[AsyncEngine]:
    eng = make_engine(settings, pool_size=40)
    yield eng
    await eng.dispose()


@pytest.fixture(scope="session")
async def redis(settings: Settings) -> AsyncIterator[Redis | RedisCluster]:
    client = make_redis(settings, max_connections=2000)
    yield client
    await close_redis(client)


@pytest.fixture(scope="session")
def ctx(engine: AsyncEngine, redis: Redis, settings: Settings) -> Context:
    store = RedisStockStore(redis, replica_acks(settings))
    return Context(engine=engine, stock=store, settings=settings,
                   topics=Topics(settings.kafka_topic_prefix))


@pytest.fixture
def db_ctx(ctx: Context) -> Context:
    """The old design: stock in Postgres."""
    return Context(engine=ctx.engine, stock=ctx.stock,
                   settings=ctx.settings.model_copy(update={"hotdeal_stock_redis": False}),
                   topics=ctx.topics)


ProductFactory = Callable[..., Awaitable[int]]


@pytest.fixture
def new_product(ctx: Context) -> ProductFactory:
    async def make(stock: int = 100, price: int = 1000) -> int:
        return (await create_product(ctx, random_name(), price, stock)).id
    return make
