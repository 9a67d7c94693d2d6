"""Clients of a dependency that is not there: a local port nothing listens on refuses every
connection at once, so an outage is met without stopping any shared service."""

from __future__ import annotations

import socket

from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine

from hotdeal_core.db.engine import make_engine
from hotdeal_core.settings import Settings
from hotdeal_core.stock.client import make_redis
from hotdeal_core.stock.redis_store import RedisStockStore


def closed_port() -> int:
    """A local TCP port that was free a moment ago (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def settings_on_closed_ports() -> Settings:
    return Settings(_env_file=None,
                    database_url=f"postgresql+asyncpg://u:p@127.0.0.1:{closed_port()}/none",
                    redis_url=f"redis://127.0.0.1:{closed_port()}/0")


def store_on_a_closed_port() -> tuple[RedisStockStore, Redis]:
    """The real stock store on the real client factory, with nothing at its address."""
    redis = make_redis(settings_on_closed_ports())
    assert isinstance(redis, Redis)
    return RedisStockStore(redis), redis


def engine_on_a_closed_port() -> AsyncEngine:
    return make_engine(settings_on_closed_ports(), pool_size=1)
