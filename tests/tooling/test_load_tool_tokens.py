"""The load tools send buyer tokens: every order of locust, wrk (make bench) and the chaos
buyers carries `Authorization: Bearer <JWT>` whose `sub` is the body's user_id, minted once
per buyer before the request loop. Each tool is run against a recording fake API here."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from devtools.chaos.load import Buyers, Ledger, LoadConfig
from hotdeal_core.identity import BuyerTokens, InvalidToken, TokenMinter
from hotdeal_core.settings import Settings
from loadtest.buyers import (
    TTL_MARGIN_SECONDS,
    UNKNOWN_RUN_TTL_SECONDS,
    BuyerAuth,
    token_ttl,
    write_token_file,
)
from tests.random_refs import random_user
from tests.waiting import eventually

ROOT = Path(__file__).resolve().parents[2]
SETTINGS = Settings(allow_dev_secrets=True)
SOLD_OUT = json.dumps({"error": {"code": "sold_out", "message": "sold out"}}).encode()


def _buyer_of(authorization: str | None) -> str:
    """The verified `sub` of an `Authorization: Bearer` header, as the API would read it."""
    scheme, _, token = (authorization or "").partition(" ")
    if scheme != "Bearer":
        raise InvalidToken(f"no bearer token: {authorization!r}")
    return BuyerTokens(SETTINGS).buyer(token)


class FakeApi(ThreadingHTTPServer):
    """Answers every POST 409 sold_out (settles an order, no payment follows) and records
    (verified token sub or the error, the body's user_id) per request."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.seen: list[tuple[str, str]] = []
        self.lock = threading.Lock()

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Quiet about a load tool that quits mid-answer (closed connections)."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as wrk and locust expect
    server: FakeApi

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        try:
            sub = _buyer_of(self.headers.get("Authorization"))
        except InvalidToken as exc:
            sub = f"invalid: {exc}"
        with self.server.lock:
            self.server.seen.append((sub, str(body.get("user_id"))))
        self.send_response(409)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(SOLD_OUT)))
        self.end_headers()
        self.wfile.write(SOLD_OUT)

    def log_message(self, *args: Any) -> None:
        return None


@pytest.fixture
def api() -> Iterator[FakeApi]:
    server = FakeApi()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def _assert_every_order_signed_by_its_buyer(seen: list[tuple[str, str]], buyers: int) -> None:
    assert seen, "no request reached the fake API"
    wrong = [(sub, user) for sub, user in seen if sub != user]
    assert not wrong, f"{len(wrong)} of {len(seen)} requests, e.g. {wrong[:3]}"
    assert len({user for _, user in seen}) >= buyers


def test_a_token_outlives_the_run_it_is_minted_for() -> None:
    assert token_ttl(30.0) >= 30 + TTL_MARGIN_SECONDS
    assert token_ttl(7200.5) > 7200.5 + TTL_MARGIN_SECONDS
    assert token_ttl(None) == token_ttl(0) == UNKNOWN_RUN_TTL_SECONDS


def test_buyer_auth_mints_each_buyers_token_once_and_signs_it_as_that_buyer() -> None:
    minted: list[str] = []

    class CountingMinter(TokenMinter):
        def token(self, buyer: str, ttl_seconds: float = 3600, now: float | None = None) -> str:
            minted.append(buyer)
            return super().token(buyer, ttl_seconds, now)

    auth = BuyerAuth(CountingMinter(SETTINGS), token_ttl(60))
    first, second = random_user("buyer"), random_user("buyer")
    header = auth.header(first)
    assert auth.header(first) is header and auth.token(first) in header["Authorization"]
    auth.header(second)
    assert minted == [first, second]
    assert _buyer_of(header["Authorization"]) == first


def test_the_wrk_token_file_holds_one_valid_token_per_buyer(tmp_path: Path) -> None:
    buyers = [f"{random_user('b')}-{n}" for n in range(50)]
    path = tmp_path / "buyers.tsv"
    assert write_token_file(path, BuyerAuth.from_settings(10, SETTINGS), buyers) == 50
    lines = [line.split("\t") for line in path.read_text().splitlines()]
    assert [buyer for buyer, _ in lines] == buyers
    assert all(_buyer_of(f"Bearer {token}") == buyer for buyer, token in lines)


@pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk is not installed "
                    "(scripts/ensure-wrk.sh)")
def test_wrk_orders_rotate_over_the_pool_each_with_its_own_token(api: FakeApi,
                                                                 tmp_path: Path) -> None:
    tokens = tmp_path / "buyers.tsv"
    write_token_file(tokens, BuyerAuth.from_settings(10, SETTINGS),
                     (f"{random_user('b')}-{n}" for n in range(6)))
    done = subprocess.run(
        ["wrk", "-t2", "-c2", "-d1s", "-s", str(ROOT / "benchmarks" / "wrk" / "orders.lua"),
         api.url, "--", "/orders", "7", str(tokens), "2"],
        capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr + done.stdout
    assert '"409": ' in done.stdout  # stats.lua counted the answers
    _assert_every_order_signed_by_its_buyer(api.seen, 6)


def test_locust_buyers_send_each_order_with_their_own_token(api: FakeApi) -> None:
    env = {**os.environ, "ALLOW_DEV_SECRETS": "true", "HOTDEAL_PRODUCT_ID": "7",
           "HOTDEAL_USERS": "4", "HOTDEAL_WAIT": "0.05"}
    done = subprocess.run(
        [sys.executable, "-m", "locust", "-f", "loadtest/locustfile.py", "--headless",
         # every user spawned at once, with time for each to order on a busy machine
         "-u", "4", "-r", "100", "-t", "4s", "--only-summary", "-H", api.url],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=90, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    _assert_every_order_signed_by_its_buyer(api.seen, 4)


def test_locust_refuses_to_start_when_it_may_not_mint_tokens(api: FakeApi) -> None:
    env = {**os.environ, "ALLOW_DEV_SECRETS": "false", "HOTDEAL_PRODUCT_ID": "7"}
    done = subprocess.run(
        [sys.executable, "-m", "locust", "-f", "loadtest/locustfile.py", "--headless",
         "-u", "1", "-r", "1", "-t", "2s", "--only-summary", "-H", api.url],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=90, check=False)
    assert done.returncode == 2, done.stdout[-3000:] + done.stderr[-3000:]
    assert "cannot mint buyer tokens" in done.stdout + done.stderr
    assert not api.seen


async def test_chaos_buyers_send_each_order_with_their_own_token() -> None:
    seen: list[tuple[str, str]] = []

    def answer(request: httpx.Request) -> httpx.Response:
        try:
            sub = _buyer_of(request.headers.get("Authorization"))
        except InvalidToken as exc:
            sub = f"invalid: {exc}"
        seen.append((sub, json.loads(request.content)["user_id"]))
        return httpx.Response(409, content=SOLD_OUT)

    cfg = LoadConfig("http://fake", 7, "secret", buyers=3, buyer_ids=5, think=0)
    buyers = Buyers(cfg, Ledger(), BuyerAuth.from_settings(None, SETTINGS),
                    transport=httpx.MockTransport(answer))
    task = asyncio.create_task(buyers.run())

    async def sixty_orders() -> bool:
        return len(seen) >= 60
    try:
        await eventually(sixty_orders, 10, "60 orders of the chaos buyers")
    finally:
        buyers.stop()
    await asyncio.wait_for(task, 10)
    _assert_every_order_signed_by_its_buyer(seen, 3)
