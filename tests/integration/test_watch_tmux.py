"""`hotdeal deal watch` in a real terminal (tmux) against a live deal in Postgres and Redis.

The order API's /metrics is played by a small HTTP server whose counters grow at every
scrape, in prometheus-client's format, so the API figures are checked without the API. The
deal's end is done as the reconciler would (`end_deal`, then `flush_deal`).
"""

from __future__ import annotations

import asyncio
import os
import re
import shlex
import shutil
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from hotdeal_core.usecases import deals, orders
from hotdeal_core.usecases.context import Context
from hotdeal_core.usecases.flush import flush_deal
from tests.conftest import ProductFactory
from tests.waiting import eventually

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")
HOTDEAL = str(Path(sys.executable).parent / "hotdeal")


class Tmux:
    """One private tmux server (its own socket) running one command in one pane.

    A shell around the command prints its exit status on the screen: tmux's own
    `pane_dead_status` was seen empty for 20 s with the command a zombie (not yet reaped
    by the tmux server). The shell traps SIGINT (so Ctrl-C reaches the command, which gets
    the default handler back, and the shell lives on to print the status)."""

    def __init__(self, command: list[str]) -> None:
        self.socket = f"hotdeal-test-{uuid.uuid4().hex[:8]}"
        env = {k: os.environ[k] for k in ("DATABASE_URL", "REDIS_URL", "KAFKA_TOPIC_PREFIX")}
        script = 'trap : INT; "$@"; echo "[exit $?]"'
        line = shlex.join(["env", *(f"{k}={v}" for k, v in env.items()),
                           "sh", "-c", script, "sh", *command])
        self._tmux("-f", "/dev/null", "start-server", ";", "set-option", "-g",
                   "remain-on-exit", "on", ";", "new-session", "-d", "-s", "w", "-x", "140",
                   "-y", "30", line)
        self.path = Path(self._tmux("display", "-p", "#{socket_path}").strip())

    def _tmux(self, *args: str) -> str:
        return subprocess.run(["tmux", "-L", self.socket, *args], capture_output=True,
                              text=True, check=True, timeout=10).stdout

    async def screen(self) -> str:
        return await asyncio.to_thread(self._tmux, "capture-pane", "-p", "-J", "-S", "-",
                                       "-t", "w")

    async def exit_status(self) -> str | None:
        """The command's exit status once it ended (a string: "0" is a result too)."""
        found = re.search(r"\[exit (\d+)\]", await self.screen())
        return found[1] if found else None

    async def ended(self, timeout: float = 20) -> tuple[str, str]:
        """(exit status, screen) once the command ended; the screen in the failure if not."""
        try:
            status = await eventually(self.exit_status, timeout, "the watch to exit")
        except AssertionError as exc:
            raise AssertionError(f"{exc}; the screen: {flat(await self.screen())}") from None
        return status, flat(await self.screen())

    def keys(self, *keys: str) -> None:
        self._tmux("send-keys", "-t", "w", *keys)

    def close(self) -> None:
        subprocess.run(["tmux", "-L", self.socket, "kill-server"], capture_output=True,
                       check=False, timeout=10)
        self.path.unlink(missing_ok=True)  # kill-server leaves the socket file behind


class FakeMetrics(BaseHTTPRequestHandler):
    """Every scrape: 10 more sold_out refusals and 4 more reservations of 2-6 ms."""

    scrapes = 0

    def do_GET(self) -> None:
        FakeMetrics.scrapes += 1
        n = FakeMetrics.scrapes
        body = (
            "# HELP hotdeal_orders_total Orders by outcome\n"
            "# TYPE hotdeal_orders_total counter\n"
            f'hotdeal_orders_total{{outcome="sold_out"}} {10.0 * n}\n'
            f'hotdeal_orders_total{{outcome="accepted"}} {n}.0\n'
            "# HELP hotdeal_reservation_duration_seconds Reservation\n"
            "# TYPE hotdeal_reservation_duration_seconds histogram\n"
            'hotdeal_reservation_duration_seconds_bucket{le="0.002"} 0.0\n'
            f'hotdeal_reservation_duration_seconds_bucket{{le="0.006"}} {4.0 * n}\n'
            f'hotdeal_reservation_duration_seconds_bucket{{le="+Inf"}} {4.0 * n}\n'
            f"hotdeal_reservation_duration_seconds_count {4.0 * n}\n"
            f"hotdeal_reservation_duration_seconds_sum {0.012 * n}\n").encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        return None


@pytest.fixture
def metrics_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeMetrics)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def flat(screen: str) -> str:
    return " ".join(screen.split())


async def started_deal(ctx: Context, new_product: ProductFactory, stock: int = 10) -> int:
    product_id = await new_product(stock=stock)
    await deals.start_deal(ctx, deals.StartDeal(product_id, stock, 5, None))
    return product_id


async def test_watch_follows_a_live_deal_and_exits_0_once_it_is_reconciled(
        ctx: Context, new_product: ProductFactory, metrics_url: str) -> None:
    product_id = await started_deal(ctx, new_product)
    tmux = Tmux([HOTDEAL, "deal", "watch", str(product_id), "--api-url", metrics_url,
                 "--interval", "0.5", "--audit-every", "0.5"])
    try:
        async def showing(*parts: str) -> str | None:
            screen = flat(await tmux.screen())
            return screen if all(p in screen for p in parts) else None

        first = await eventually(lambda: showing("ACTIVE", "stock left 10 of 10",
                                                 "pending 0", "holds"), 20, "the first view")
        assert "Traceback" not in first
        user = f"watcher-{uuid.uuid4().hex[:6]}"
        for _ in range(3):
            await orders.place_order(ctx, orders.PlaceOrder(product_id, user, 1, None))
        await eventually(lambda: showing("stock left 7 of 10", "pending 3 "), 20,
                         "the orders to show")
        # The fake API: 10 refusals per scrape (every 0.5 s, if the machine keeps up) and
        # reservations of 2-6 ms, so the p95 is 95 % into that bucket whatever the timing.
        api = await eventually(lambda: showing("p95 reservation 5.8 ms"), 20, "the API figures")
        refused = re.search(r"refused orders/s ([\d.]+) \(sold_out ([\d.]+)", api)
        assert refused and 5 <= float(refused[1]) <= 40 and refused[1] == refused[2], api
        deal_id, _ = await deals.end_deal(ctx, product_id)
        await flush_deal(ctx, deal_id)
        status, screen = await tmux.ended()
        assert status == "0", screen
        assert "RECONCILED" in screen and "deal reconciled; the audit holds" in screen
        assert "10 = 7 + 3 + 0 + 0 holds" in screen
    finally:
        tmux.close()


async def test_watch_ends_cleanly_on_ctrl_c_and_shows_n_a_for_an_absent_api(
        ctx: Context, new_product: ProductFactory) -> None:
    product_id = await started_deal(ctx, new_product)
    tmux = Tmux([HOTDEAL, "deal", "watch", str(product_id), "--api-url",
                 "http://127.0.0.1:9", "--interval", "0.5"])
    try:
        async def drawn() -> str | None:
            screen = flat(await tmux.screen())
            return screen if "stock left 10 of 10" in screen else None
        screen = await eventually(drawn, 20, "the first view")
        assert "refused orders/s n/a" in screen and "p95 reservation n/a" in screen
        tmux.keys("C-c")
        status, screen = await tmux.ended()
        assert status == "0", screen
        assert "stopped watching (Ctrl-C)" in screen and "Traceback" not in screen
    finally:
        tmux.close()
        deal_id, _ = await deals.end_deal(ctx, product_id)
        await flush_deal(ctx, deal_id)
