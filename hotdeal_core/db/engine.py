"""Engine factory: one per process, built in the composition root.

It is also the one place where a Postgres error is judged: one that says the database
cannot serve now (down, unreachable, starting up, out of connections, the pool exhausted)
is raised as `DependencyUnavailable("postgres")` from it, at connect (`_Pool`) and during
execution (`_translate`, SQLAlchemy's handle_error event); any other error (IntegrityError,
a bad statement...) reaches the caller as SQLAlchemy raised it.
"""

from __future__ import annotations

from sqlalchemy import event
from sqlalchemy.engine import ExceptionContext
from sqlalchemy.exc import DBAPIError, IntegrityError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import AsyncAdaptedQueuePool, PoolProxiedConnection

from hotdeal_core.errors import DependencyUnavailable
from hotdeal_core.settings import Settings


def _unavailable() -> DependencyUnavailable:
    return DependencyUnavailable("postgres", "the order database is unavailable; retry shortly")


class _Pool(AsyncAdaptedQueuePool):
    """The default pool of an async engine, whose checkout raises DependencyUnavailable for
    what never reaches handle_error: the pool's own timeout (every connection busy) and the
    socket error asyncpg raises unwrapped when it cannot connect."""

    def connect(self) -> PoolProxiedConnection:
        try:
            return super().connect()
        except (PoolTimeoutError, OSError) as exc:
            raise _unavailable() from exc


def make_engine(settings: Settings, *, pool_size: int | None = None) -> AsyncEngine:
    engine = create_async_engine(
        settings.database_url,
        poolclass=_Pool,
        pool_size=pool_size or settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        pool_timeout=settings.db_pool_timeout,
        # The deal fence (db/fence.py) relies on READ COMMITTED: the statement after the lock
        # takes a fresh snapshot and sees a flush or rebuild that committed meanwhile. Set
        # here, so a server or role default of REPEATABLE READ / SERIALIZABLE cannot change it.
        isolation_level="READ COMMITTED",
    )
    event.listen(engine.sync_engine, "handle_error", _translate)
    return engine


def _translate(context: ExceptionContext) -> DependencyUnavailable | None:
    """handle_error listener: the error SQLAlchemy is about to raise, replaced by
    DependencyUnavailable when Postgres cannot serve now (None: raised unchanged). A
    returned exception replaces the original, the connection is still invalidated."""
    if context.is_pre_ping:  # the pool judges its own pings
        return None
    if not isinstance(context.original_exception, Exception):
        # A cancellation (or an interrupt) mid-statement: SQLAlchemy reports it as a
        # disconnect, to drop the connection; it must stay a cancellation.
        return None
    error = context.sqlalchemy_exception or context.original_exception
    if isinstance(context.original_exception, OSError) or context.is_disconnect or \
            _cannot_serve_now(error):
        return _unavailable()
    return None


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


def _cannot_serve_now(exc: BaseException) -> bool:
    """True when this SQLAlchemy error says Postgres is down, unreachable, starting up or
    out of connections (`_translate` only; the rest of the code asks `is_retriable`)."""
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
