"""The engine (hotdeal_core/db/engine.py) raises a Postgres that cannot serve now as
`DependencyUnavailable("postgres")`, and every other database error as SQLAlchemy raised
it. Real Postgres (this session's database); the pool and the connections are our own."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from hotdeal_core.db.engine import make_engine
from hotdeal_core.errors import DependencyUnavailable, is_retriable
from hotdeal_core.settings import Settings
from tests.waiting import eventually


async def test_an_exhausted_pool_is_postgres_unavailable(settings: Settings) -> None:
    engine = make_engine(settings.model_copy(update={"db_max_overflow": 0,
                                                     "db_pool_timeout": 0.2}), pool_size=1)
    try:
        async with engine.connect() as held:
            await held.execute(text("SELECT 1"))
            with pytest.raises(DependencyUnavailable) as raised:
                async with engine.connect() as conn:
                    await conn.execute(text("SELECT 1"))
    finally:
        await engine.dispose()
    assert raised.value.code == "postgres_unavailable"
    assert isinstance(raised.value.__cause__, PoolTimeoutError)


async def test_a_connection_the_server_ends_is_postgres_unavailable(settings: Settings
                                                                     ) -> None:
    engine = make_engine(settings, pool_size=2)
    try:
        async with engine.connect() as victim, engine.connect() as admin:
            pid = (await victim.execute(text("SELECT pg_backend_pid()"))).scalar_one()
            await admin.execute(text("SELECT pg_terminate_backend(:p)"), {"p": pid})
            await admin.commit()
            with pytest.raises(DependencyUnavailable) as raised:
                await victim.execute(text("SELECT 1"))
        # The pool dropped the dead connection: the next checkout works.
        async with engine.connect() as conn:
            assert (await conn.execute(text("SELECT 1"))).scalar_one() == 1
    finally:
        await engine.dispose()
    assert raised.value.code == "postgres_unavailable" and is_retriable(raised.value)


async def test_any_other_database_error_is_raised_as_sqlalchemy_raised_it(settings: Settings
                                                                          ) -> None:
    engine = make_engine(settings, pool_size=1)
    try:
        async with engine.connect() as conn:
            with pytest.raises(DBAPIError) as division:
                await conn.execute(text("SELECT 1 / 0"))
            await conn.rollback()
            await conn.execute(text("CREATE TEMPORARY TABLE once (id int PRIMARY KEY)"))
            await conn.execute(text("INSERT INTO once VALUES (1)"))
            with pytest.raises(IntegrityError) as twice:
                await conn.execute(text("INSERT INTO once VALUES (1)"))
            await conn.rollback()
    finally:
        await engine.dispose()
    assert not is_retriable(division.value) and not is_retriable(twice.value)


async def test_a_statement_cancelled_midway_stays_a_cancellation(settings: Settings) -> None:
    # SQLAlchemy hands a cancellation to handle_error as a disconnect: translated, it
    # would turn a shutdown or a timeout into "postgres unavailable" and never stop.
    engine = make_engine(settings, pool_size=2)
    pid: list[int] = []

    async def sleep_in_postgres() -> None:
        async with engine.connect() as conn:
            pid.append((await conn.execute(text("SELECT pg_backend_pid()"))).scalar_one())
            await conn.execute(text("SELECT pg_sleep(30)"))

    async def sleeping() -> bool | None:
        if not pid:
            return None
        async with engine.connect() as conn:
            state = (await conn.execute(text(
                "SELECT wait_event FROM pg_stat_activity WHERE pid = :p"), {"p": pid[0]}
            )).scalar_one_or_none()
        return state == "PgSleep" or None
    try:
        task = asyncio.create_task(sleep_in_postgres())
        await eventually(sleeping, 10, "the statement running in Postgres")
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(task, 10)
    finally:
        await engine.dispose()
