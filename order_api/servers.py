"""The HTTP servers the order API (or any ASGI app) runs under, by ORDER_API_SERVER: uvicorn, or
granian (optional, measured slower: benchmarks/http.py); both stop gracefully on SIGTERM.
With worker processes, PROMETHEUS_MULTIPROC_DIR is set first (docs/observability.md)."""

from __future__ import annotations

import atexit
import importlib
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hotdeal_core.observability.exposition import MULTIPROC_ENV
from hotdeal_core.observability.logs import configure_logging as _configure
from hotdeal_core.settings import Settings

SERVERS = ("uvicorn", "granian")
DEFAULT_SERVER = "uvicorn"
GRACEFUL_SECONDS = 10


def configure_logging(settings: Settings) -> None:
    """LOG_FORMAT / LOG_LEVEL for the API (hotdeal_core/observability/logs.py); every worker
    process calls it too (order_api/asgi.py): a spawned worker inherits no logging set-up."""
    _configure("order-api", settings.log_format, settings.log_level)


def multiprocess_metrics() -> Path:
    """Set up PROMETHEUS_MULTIPROC_DIR for the worker processes about to start."""
    given = os.environ.get(MULTIPROC_ENV)
    if given:
        directory = Path(given)
        directory.mkdir(parents=True, exist_ok=True)
        for stale in directory.glob("*.db"):  # a previous run's values would be added up
            stale.unlink()
        return directory
    directory = Path(tempfile.mkdtemp(prefix="hotdeal-metrics-"))
    os.environ[MULTIPROC_ENV] = str(directory)
    atexit.register(shutil.rmtree, directory, ignore_errors=True)
    return directory


def server_from_env() -> str:
    """ORDER_API_SERVER (uvicorn | granian), read once at start-up."""
    server = os.environ.get("ORDER_API_SERVER", DEFAULT_SERVER).strip().lower()
    if server not in SERVERS:
        raise SystemExit(f"hotdeal: refusing to start: ORDER_API_SERVER={server!r} is not one "
                         f"of {', '.join(SERVERS)}")
    return server


def serve(server: str, target: str, build: Callable[[], Any], *, host: str, port: int,
          workers: int, backlog: int = 2048, loop: str = "asyncio") -> None:
    """Serve `target` ("module:attribute", imported by worker processes) or, where the server
    runs it in this process, the app `build()` returns; `backlog` (ORDER_API_BACKLOG) and `loop`
    (ORDER_API_LOOP) as set."""
    if server == "granian" or workers > 1:
        multiprocess_metrics()  # before the first worker imports prometheus-client
    if server == "granian":
        _granian(target, host=host, port=port, workers=workers, backlog=backlog, loop=loop)
        return
    import uvicorn

    app: Any = target if workers > 1 else build()
    # log_config=None: the logs keep our set-up (LOG_FORMAT); no access log (LOG_REQUESTS).
    # proxy_headers=False: the client address is the socket peer's; only the app reads a
    # forwarded header, when TRUSTED_CLIENT_IP_HEADER says so (order_api/limits.py). Else
    # uvicorn takes X-Forwarded-For from any client on 127.0.0.1, its default trusted host.
    uvicorn.run(app, host=host, port=port, workers=workers, loop=loop, http="httptools",
                log_level="warning", log_config=None, access_log=False, proxy_headers=False,
                backlog=backlog,
                timeout_graceful_shutdown=GRACEFUL_SECONDS)


def _granian(target: str, *, host: str, port: int, workers: int, backlog: int,
             loop: str) -> None:
    try:  # imported by name: an optional package, absent from a fresh install
        granian = importlib.import_module("granian")
        const = importlib.import_module("granian.constants")
        log_levels = importlib.import_module("granian.log").LogLevels
    except ImportError:
        raise SystemExit("hotdeal: refusing to start: ORDER_API_SERVER=granian needs the "
                         "granian package (pip install granian)") from None
    granian.Granian(
        target, address=host, port=port, interface=const.Interfaces.ASGI, workers=workers,
        loop=const.Loops(loop), http=const.HTTPModes.http1, websockets=False,
        # Connections held by the kernel per worker socket; a spike of buyers waits there
        # rather than being refused.
        backlog=backlog, log_level=log_levels.warning,
        # A worker that has not stopped by then (a stuck shutdown) is killed.
        workers_kill_timeout=GRACEFUL_SECONDS + 20).serve()
