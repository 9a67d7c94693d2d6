"""The HTTP servers the order API can run under, with the same settings for any ASGI app
(the trivial reference app of the benchmarks runs through here too).

- uvicorn: uvloop + httptools; one worker serves the app object built here, several workers
  import `target` in each worker process.
- granian (Rust, hyper/tokio; optional, `pip install granian`: not a dependency, measured
  slower than uvicorn for this app, see benchmarks/http.py): ASGI interface with its
  lifespan, uvloop, HTTP/1 only; it always runs `workers` worker processes under a
  supervising main process, each importing `target`.

Both stop gracefully on SIGTERM: new connections are refused, the app's lifespan shutdown
runs (the API logs "order API stopped gracefully"), within GRACEFUL_SECONDS for the open
connections.
"""

from __future__ import annotations

import importlib
import logging
import os
from collections.abc import Callable
from typing import Any

SERVERS = ("uvicorn", "granian")
DEFAULT_SERVER = "uvicorn"
GRACEFUL_SECONDS = 10
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"


def configure_logging() -> None:
    """INFO logs of our own modules to stderr (a no-op when the root logger has a handler:
    a forked worker inherits its parent's)."""
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)


def server_from_env() -> str:
    """ORDER_API_SERVER (uvicorn | granian), read once at start-up."""
    server = os.environ.get("ORDER_API_SERVER", DEFAULT_SERVER).strip().lower()
    if server not in SERVERS:
        raise SystemExit(f"hotdeal: refusing to start: ORDER_API_SERVER={server!r} is not one "
                         f"of {', '.join(SERVERS)}")
    return server


def serve(server: str, target: str, build: Callable[[], Any], *, host: str, port: int,
          workers: int) -> None:
    """Serve the ASGI app `target` ("module:attribute", imported by worker processes) or,
    where the server runs it in this process, the app `build()` returns."""
    if server == "granian":
        _granian(target, host=host, port=port, workers=workers)
        return
    import uvicorn

    app: Any = target if workers > 1 else build()
    uvicorn.run(app, host=host, port=port, workers=workers, loop="uvloop", http="httptools",
                log_level="warning", timeout_graceful_shutdown=GRACEFUL_SECONDS)


def _granian(target: str, *, host: str, port: int, workers: int) -> None:
    try:  # imported by name: an optional package, absent from a fresh install
        granian = importlib.import_module("granian")
        const = importlib.import_module("granian.constants")
        log_levels = importlib.import_module("granian.log").LogLevels
    except ImportError:
        raise SystemExit("hotdeal: refusing to start: ORDER_API_SERVER=granian needs the "
                         "granian package (pip install granian)") from None
    granian.Granian(
        target, address=host, port=port, interface=const.Interfaces.ASGI, workers=workers,
        loop=const.Loops.uvloop, http=const.HTTPModes.http1, websockets=False,
        # Connections held by the kernel per worker socket; a spike of 1,000 buyers waits
        # there rather than being refused.
        backlog=2048, log_level=log_levels.warning,
        # A worker that has not stopped by then (a stuck shutdown) is killed.
        workers_kill_timeout=GRACEFUL_SECONDS + 20).serve()
