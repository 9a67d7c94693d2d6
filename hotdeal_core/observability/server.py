"""The consumers' metrics port (METRICS_PORT): `GET /metrics` for Prometheus, on the
process's own event loop, so scrape-time gauges read with the process's own engine and
Kafka consumers. HTTP/1.1 with `Connection: close`: one scrape, one connection; anything
but `GET /metrics` (or `/healthz`) is a 404, a malformed request a 400."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from prometheus_client.core import Metric

from hotdeal_core.observability.exposition import CONTENT_TYPE, render

log = logging.getLogger(__name__)
MAX_HEAD = 8192  # request line + headers; a scrape sends a few hundred bytes
READ_TIMEOUT = 10.0

Families = Callable[[], Awaitable[list[Metric]]]


def _answer(status: str, body: bytes, content_type: str = "text/plain; charset=utf-8") -> bytes:
    head = (f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n")
    return head.encode() + body


class MetricsServer:
    def __init__(self, host: str, port: int, families: Families) -> None:
        self.host, self.port, self.families = host, port, families
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, self.host, self.port)
        sockets = self._server.sockets
        if sockets:  # port 0: the one the system chose
            self.port = int(sockets[0].getsockname()[1])
        log.info("metrics on http://%s:%s/metrics", self.host, self.port)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), READ_TIMEOUT)
            writer.write(await self._respond(head))
            await writer.drain()
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError,
                ConnectionError):
            with contextlib.suppress(ConnectionError):
                writer.write(_answer("400 Bad Request", b"bad request\n"))
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    async def _respond(self, head: bytes) -> bytes:
        if len(head) > MAX_HEAD:
            return _answer("431 Request Header Fields Too Large", b"too large\n")
        parts = head.split(b"\r\n", 1)[0].split(b" ")
        if len(parts) != 3 or not parts[2].startswith(b"HTTP/1."):
            return _answer("400 Bad Request", b"bad request\n")
        method, path = parts[0], parts[1].split(b"?", 1)[0]
        if method != b"GET":
            return _answer("405 Method Not Allowed", b"GET only\n")
        if path == b"/healthz":
            return _answer("200 OK", b"ok\n")
        if path != b"/metrics":
            return _answer("404 Not Found", b"not found\n")
        return _answer("200 OK", render(await self.families()), CONTENT_TYPE)
