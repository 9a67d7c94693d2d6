"""Who runs a periodic duty when several replicas run: the holder of its Postgres session
advisory lock (`PgDutyLocks`; `LocalDutyLocks` is the in-process fake). The rules and the
one window where two runs may overlap: docs/scaling.md, "Periodic duties"."""

from __future__ import annotations

import asyncio
import logging
import zlib
from typing import Protocol

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

log = logging.getLogger(__name__)

# The two-key advisory lock space: 7001 is the deal fence (hotdeal_core/db/fence.py).
_NAMESPACE = 7002
# The server drops a silent leader's session after idle + interval * count seconds.
KEEPALIVE_IDLE, KEEPALIVE_INTERVAL, KEEPALIVE_COUNT = 5, 2, 3
# A leader whose session does not answer within this long steps down.
CHECK_TIMEOUT_SECONDS = 5.0


def lock_key(name: str) -> int:
    """The duty's key in the advisory lock space (a signed int4, as Postgres wants it)."""
    crc = zlib.crc32(name.encode())
    return crc - 2**32 if crc >= 2**31 else crc


class DutyLocks(Protocol):
    """The port: whether this replica may run the named duty now."""

    async def hold(self, name: str) -> bool:
        """True if this replica holds the duty's lock (taking it if it is free)."""
        ...

    async def close(self) -> None:
        """Give up every lock (stop)."""
        ...


class PgDutyLocks:
    def __init__(self, database_url: str) -> None:
        # NullPool: the one connection is ours for good, never recycled behind our back.
        self._engine: AsyncEngine = create_async_engine(database_url, poolclass=NullPool)
        self._conn: AsyncConnection | None = None
        self._held: set[str] = set()
        self._mutex = asyncio.Lock()  # one connection, several duty tasks
        self._failing = False

    @property
    def held(self) -> frozenset[str]:
        return frozenset(self._held)

    async def _connection(self) -> AsyncConnection:
        if self._conn is None:
            conn = await self._engine.connect()
            conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
            for name, value in (("tcp_keepalives_idle", KEEPALIVE_IDLE),
                                ("tcp_keepalives_interval", KEEPALIVE_INTERVAL),
                                ("tcp_keepalives_count", KEEPALIVE_COUNT)):
                await conn.execute(text(f"SET {name} = {int(value)}"))
            self._conn = conn
        return self._conn

    async def hold(self, name: str) -> bool:
        async with self._mutex:
            try:
                held = await asyncio.wait_for(self._hold(name), CHECK_TIMEOUT_SECONDS)
            except asyncio.CancelledError:
                await self._drop()
                raise
            except Exception as exc:  # noqa: BLE001 - any failure: not the leader any more
                if not self._failing:
                    log.warning("duty locks: session lost (%s: %s); stepping down from %s",
                                type(exc).__name__, exc, sorted(self._held) or "nothing")
                self._failing = True
                await self._drop()
                return False
            self._failing = False
            return held

    async def _hold(self, name: str) -> bool:
        conn = await self._connection()
        if name in self._held:  # the session answers, so its locks are still ours
            await conn.execute(text("SELECT 1"))
            return True
        taken = (await conn.execute(text("SELECT pg_try_advisory_lock(:ns, :key)"),
                                    {"ns": _NAMESPACE, "key": lock_key(name)})).scalar()
        if taken:
            self._held.add(name)
            log.info("leading duty %s", name)
        return bool(taken)

    async def _drop(self) -> None:
        self._held.clear()
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                await asyncio.wait_for(conn.invalidate(), CHECK_TIMEOUT_SECONDS)
                await conn.close()
            except Exception:  # the session is gone either way
                log.debug("duty locks: dropping the session failed", exc_info=True)

    async def close(self) -> None:
        async with self._mutex:
            conn, self._conn = self._conn, None
            self._held.clear()
            if conn is not None:
                try:  # ends the session: the locks are free at once
                    await asyncio.wait_for(conn.close(), CHECK_TIMEOUT_SECONDS)
                except Exception:  # closed or lost: released all the same
                    log.debug("duty locks: closing the session failed", exc_info=True)
            await self._engine.dispose()


class LocalDutyLocks:
    """The fake: the replicas of one test share `owners` (duty name -> replica)."""

    def __init__(self, owners: dict[str, object], replica: object | None = None) -> None:
        self.owners = owners
        self.replica = replica if replica is not None else object()

    async def hold(self, name: str) -> bool:
        return self.owners.setdefault(name, self.replica) is self.replica

    async def close(self) -> None:
        for name in [n for n, r in self.owners.items() if r is self.replica]:
            del self.owners[name]
