"""Engine factory: one per process, built in the composition root."""

from __future__ import annotations

from sqlalchemy.exc import DBAPIError, IntegrityError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from hotdeal_core.settings import Settings


def make_engine(settings: Settings, *, pool_size: int | None = None) -> AsyncEngine:
    return create_async_engine(
        settings.database_url,
        pool_size=pool_size or settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        pool_timeout=settings.db_pool_timeout,
        # The deal fence (db/fence.py) relies on READ COMMITTED: the statement after the lock
        # takes a fresh snapshot and sees a flush or rebuild that committed meanwhile. Set
        # here, so a server or role default of REPEATABLE READ / SERIALIZABLE cannot change it.
        isolation_level="READ COMMITTED",
    )


# SQLSTATEs of a server that cannot serve now but will: admin_shutdown, crash_shutdown,
# cannot_connect_now (starting up, or recovering), too_many_connections. Class 08 is
# every connection exception.
_UNAVAILABLE_SQLSTATES = frozenset({"57P01", "57P02", "57P03", "53300"})


def _sqlstate(exc: DBAPIError) -> str:
    """The SQLSTATE the driver reported ('' if none): asyncpg's adapted error has it, and
    so has its cause, the driver's own exception."""
    for err in (exc.orig, getattr(exc.orig, "__cause__", None)):
        code = getattr(err, "sqlstate", None) or getattr(err, "pgcode", None)
        if isinstance(code, str) and code:
            return code
    return ""


def is_unavailable(exc: BaseException) -> bool:
    """True when Postgres is down, unreachable, starting up or out of connections: worth a
    retry later (a 503), not a fault of the request or of the code (a 500)."""
    if isinstance(exc, PoolTimeoutError | OperationalError | InterfaceError):
        return True
    if not isinstance(exc, DBAPIError):
        return False
    code = _sqlstate(exc)
    return exc.connection_invalidated or code.startswith("08") or \
        code in _UNAVAILABLE_SQLSTATES


def violated_constraint(exc: IntegrityError) -> str:
    """Name of the constraint an IntegrityError broke ('' if unknown)."""
    cause = getattr(exc.orig, "__cause__", None)
    name = getattr(cause, "constraint_name", None)
    return str(name) if name else ""
