"""A clean slate for the test suite: recreate the test database, empty the test Redis db
(every master with REDIS_CLUSTER), migrate. `python -m devtools.testenv`, run by `make test`
before pytest; uses DATABASE_URL and REDIS_URL."""

from __future__ import annotations

import asyncio
import sys

import asyncpg
from sqlalchemy.engine import make_url

from hotdeal_core.db import migrate
from hotdeal_core.settings import Settings, load_settings
from hotdeal_core.stock.client import close_redis, flush_all, make_redis


async def reset(settings: Settings) -> None:
    database_url, redis_url = settings.database_url, settings.redis_url
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
    redis = make_redis(settings, max_connections=2)
    try:
        await flush_all(redis)
    finally:
        await close_redis(redis)


def main() -> None:
    settings = load_settings()
    asyncio.run(reset(settings))
    migrate.upgrade(settings.database_url)
    print(f"test environment reset: {make_url(settings.database_url).database}, "
          f"{settings.redis_url}")


if __name__ == "__main__":
    main()
