"""A clean slate for the test suite: recreate the test database, empty the test Redis db,
migrate. Run by `make test` before pytest, so every run starts from the same state (no
backlog of expired orders or stale Redis keys from an earlier run).

    python -m devtools.testenv        uses DATABASE_URL and REDIS_URL from the environment
"""

from __future__ import annotations

import asyncio
import sys

import asyncpg
from redis.asyncio import Redis
from sqlalchemy.engine import make_url

from hotdeal_core.db import migrate
from hotdeal_core.settings import load_settings


async def reset(database_url: str, redis_url: str) -> None:
    url = make_url(database_url)
    name = url.database
    if not name or "test" not in name or "test" not in redis_url + name:
        sys.exit(f"refusing to reset {name!r}: not a test database")
    admin = await asyncpg.connect(url.set(drivername="postgresql", database="postgres")
                                  .render_as_string(hide_password=False))
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    redis = Redis.from_url(redis_url)
    try:
        await redis.flushdb()
    finally:
        await redis.aclose()


def main() -> None:
    settings = load_settings()
    asyncio.run(reset(settings.database_url, settings.redis_url))
    migrate.upgrade(settings.database_url)
    print(f"test environment reset: {make_url(settings.database_url).database}, "
          f"{settings.redis_url}")


if __name__ == "__main__":
    main()
