"""The plumbing of benchmarks/fairness.py: the API processes, deals, tokens, wrk, people."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import jwt
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from benchmarks.fairness_figures import retry_after
from devtools.procs import ROOT
from hotdeal_core.identity import TokenMinter
from hotdeal_core.messaging.topics import Topics
from hotdeal_core.settings import Settings
from hotdeal_core.stock.client import close_redis, make_redis
from hotdeal_core.stock.redis_store import RedisStockStore
from hotdeal_core.usecases.context import Context
from hotdeal_core.usecases.flush import flush_deal

WRK_DIR = ROOT / "benchmarks" / "wrk"


class Api:
    """`python -m order_api` on a port of its own, from this checkout or a commit's tree."""

    def __init__(self, name: str, env: dict[str, str], out: Path, tree: Path = ROOT) -> None:
        self.name, self.env, self.out, self.tree = name, env, out, tree
        self.url = f"http://127.0.0.1:{env['ORDER_API_PORT']}"
        self.popen: subprocess.Popen[bytes] | None = None

    @classmethod
    def at_commit(cls, commit: str, env: dict[str, str], out: Path) -> Api:
        """The API of `commit`, extracted with `git archive` (no worktree is added)."""
        tree = Path(tempfile.mkdtemp(prefix=f"hotdeal-{commit[:10]}-", dir=out))
        archive = subprocess.run(["git", "archive", "--format=tar", commit], cwd=ROOT,
                                 capture_output=True, check=True).stdout
        tar_path = tree / "tree.tar"
        tar_path.write_bytes(archive)
        with tarfile.open(tar_path) as tar:
            tar.extractall(tree, filter="data")
        return cls(f"order-api@{commit}", env, out, tree)

    def start(self, timeout: float = 90.0) -> Api:
        log = (self.out / f"{self.name}.log").open("ab")
        env = {**os.environ, **self.env, "PYTHONPATH": str(self.tree), "PYTHONUNBUFFERED": "1"}
        self.popen = subprocess.Popen([sys.executable, "-m", "order_api"], cwd=self.tree,
                                      env=env, stdout=log, stderr=subprocess.STDOUT,
                                      stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + timeout
        while True:
            try:
                with urllib.request.urlopen(f"{self.url}/readyz", timeout=2) as resp:
                    if resp.status == 200:
                        return self
            except (urllib.error.URLError, OSError):
                pass
            if self.popen.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{self.name} did not start; see {log.name}")
            time.sleep(0.1)

    def stop(self) -> None:
        if self.popen is None or self.popen.poll() is not None:
            return
        self.popen.send_signal(signal.SIGTERM)
        try:
            self.popen.wait(45)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait()


@dataclass
class Accounts:
    """Buyer ids and their tokens, written to a file for wrk (benchmarks/wrk/tokens.lua)."""

    users: list[str]
    tokens: list[str]
    path: Path

    @classmethod
    def mint(cls, minter: TokenMinter, prefix: str, count: int, out: Path,
             ttl_seconds: float = 3600) -> Accounts:
        users = [f"{prefix}-{i}" for i in range(count)]
        tokens = [minter.token(u, ttl_seconds) for u in users]
        path = out / f"{prefix}.tsv"
        path.write_text("".join(f"{u}\t{t}\n" for u, t in zip(users, tokens, strict=True)))
        return cls(users, tokens, path)


def forged_token(buyer: str) -> str:
    """A well-formed HS256 token signed with a key the API does not know."""
    now = int(time.time())
    return jwt.encode({"sub": buyer, "iat": now, "exp": now + 3600},
                      "forged-key-not-the-api-secret-0123456789", algorithm="HS256")


@dataclass
class Sql:
    engine: AsyncEngine

    async def rows(self, query: str, **params: Any) -> list[Any]:
        async with self.engine.begin() as conn:
            return list((await conn.execute(text(query), params)).all())

    async def units(self, deal_id: int, *prefixes: str) -> list[int]:
        """Units of the deal's PENDING + CONFIRMED orders whose buyer starts with each prefix
        (Postgres: the truth, whatever the clients saw)."""
        out = []
        for prefix in prefixes:
            got = await self.rows(
                "SELECT coalesce(sum(quantity), 0) FROM orders WHERE hot_deal_id = :d AND "
                "status IN ('PENDING', 'CONFIRMED') AND user_id LIKE :p", d=deal_id,
                p=prefix.replace("_", r"\_") + "%")
            out.append(int(got[0][0]))
        return out


@dataclass
class Deals:
    """Starts deals over HTTP (admin bearer) and ends + flushes them at the end."""

    api: Api
    sql: Sql
    settings: Settings
    tag: str
    products: list[int] = field(default_factory=list)

    async def start(self, stock: int, limit: int = 1, window: float | None = None) -> int:
        """A new product with a deal open from the moment this returns; `window`: sent as
        opening_window_seconds when given. Returns the product id."""
        pid = int((await self.sql.rows(
            "INSERT INTO products (name, price, stock) VALUES (:n, 1000, :s) RETURNING id",
            n=f"fair-{self.tag}-{len(self.products)}", s=stock))[0][0])
        body: dict[str, Any] = {"stock": stock, "per_user_limit": limit}
        if window is not None:
            body["opening_window_seconds"] = window
        admin = self.settings.admin_token.get_secret_value()
        async with httpx.AsyncClient(timeout=30) as client:
            resp = await client.post(f"{self.api.url}/products/{pid}/hotdeal/start", json=body,
                                     headers={"Authorization": f"Bearer {admin}"})
        if resp.status_code != 201:
            raise RuntimeError(f"deal start answered {resp.status_code}: {resp.text}")
        self.products.append(pid)
        return pid

    async def deal_of(self, product: int) -> int:
        return int((await self.sql.rows("SELECT id FROM hot_deals WHERE product_id = :p",
                                        p=product))[0][0])

    async def end_all(self, topics: Topics) -> None:
        """End every deal of the run and flush it to Postgres, as the reconciler does."""
        admin = self.settings.admin_token.get_secret_value()
        async with httpx.AsyncClient(timeout=30) as client:
            for pid in self.products:
                try:
                    await client.post(f"{self.api.url}/products/{pid}/hotdeal/end", json={},
                                      headers={"Authorization": f"Bearer {admin}"})
                except httpx.HTTPError as exc:
                    print(f"[fairness] WARNING: could not end the deal of {pid}: {exc}")
        deals = [d for (d,) in await self.sql.rows(
            "SELECT id FROM hot_deals WHERE product_id = ANY(:p) AND status = 'ENDED'",
            p=self.products)]
        redis = make_redis(self.settings, max_connections=4)
        ctx = Context(engine=self.sql.engine, stock=RedisStockStore(redis),
                      settings=self.settings, topics=topics)
        try:
            for deal_id in deals:
                await flush_deal(ctx, int(deal_id))
        except Exception as exc:  # noqa: BLE001 - the reconciler's safety net flushes later
            print(f"[fairness] WARNING: could not flush deals {deals}: {exc}")
        finally:
            await close_redis(redis)
        self.products.clear()


async def wrk(url: str, script: str, args: list[str], *, connections: int, seconds: int,
              threads: int = 1, timeout: float = 10.0) -> dict[str, Any]:
    """One wrk run (benchmarks/wrk/stats.lua's BENCH_JSON line), not blocking the loop."""
    cmd = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{max(1, seconds)}s",
           f"--timeout={max(1, round(timeout))}s", "-s", str(WRK_DIR / script), url, "--",
           *args]
    proc = await asyncio.create_subprocess_exec(*cmd, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), seconds + timeout + 60)
    line = next((x for x in out.decode().splitlines() if x.startswith("BENCH_JSON ")), None)
    if proc.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({proc.returncode}): {err.decode()}{out.decode()}")
    result: dict[str, Any] = json.loads(line.removeprefix("BENCH_JSON "))
    result["command"] = " ".join(cmd)
    result["rps"] = result["requests"] / (result["duration_us"] / 1e6)
    return result


def token_args(accounts: Accounts, product: int, threads: int, body_user: bool) -> list[str]:
    return ["/orders", str(product), str(accounts.path), str(threads), "1" if body_user else "0"]


@dataclass
class Click:
    """One person's order: their final status, how long they waited (first click to final
    answer), and how late their first click left this client (its own CPU starved)."""

    user: str
    status: int = 0
    seconds: float = 0.0
    attempts: int = 0
    late: float = 0.0


async def post_raw(url: str, path: str, body: bytes, headers: dict[str, str],
                   timeout: float) -> tuple[int, dict[str, str]]:
    """POST over a new connection (closed after), HTTP/1.1 by hand: a fraction of an HTTP
    library's CPU, so the people's clicks leave on time while wrk and the API load the
    cores. Returns the status and the headers (lower-case names)."""
    where = urlsplit(url)
    host, port = where.hostname or "127.0.0.1", where.port or 80
    head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    request = (f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: "
               f"application/json\r\nContent-Length: {len(body)}\r\nConnection: close\r\n"
               f"{head}\r\n").encode() + body

    async def exchange() -> tuple[int, dict[str, str]]:
        reader, writer = await asyncio.open_connection(host, port)
        try:
            writer.write(request)
            lines = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
            fields = (line.partition(":") for line in lines[1:] if line)
            got = {k.strip().lower(): v.strip() for k, _sep, v in fields}
            if length := int(got.get("content-length", "0")):
                await reader.readexactly(length)
            return int(lines[0].split(" ", 2)[1]), got
        finally:
            writer.close()
    return await asyncio.wait_for(exchange(), timeout)


async def person(url: str, product: int, user: str, headers: dict[str, str], body_user: bool,
                 at: float, timeout: float = 30.0, give_up: float = 60.0) -> Click:
    """Click once at loop time `at`; on 503/429 wait Retry-After and click again (as a
    browser would); stop at any other answer. `seconds`: first click to final answer."""
    loop = asyncio.get_running_loop()
    await asyncio.sleep(max(0.0, at - loop.time()))
    fields: dict[str, Any] = {"product_id": product, "quantity": 1}
    if body_user:
        fields["user_id"] = user
    body = json.dumps(fields).encode()
    start = loop.time()
    click = Click(user, late=max(0.0, start - at))
    while loop.time() - start < give_up:
        click.attempts += 1
        try:
            click.status, got = await post_raw(url, "/orders", body, headers, timeout)
        except (TimeoutError, OSError, asyncio.IncompleteReadError, ValueError):
            click.status = -1  # timed out or the connection failed: try again
            await asyncio.sleep(1.0)
            continue
        if click.status not in (429, 503):
            break
        await asyncio.sleep(retry_after(got.get("retry-after")))
    click.seconds = loop.time() - start
    return click
