"""The soak's buyers: an open-loop load, latency measured from each arrival's scheduled time
(no coordinated omission); accepted orders paid, declined or never paid by ratio; an arrival
over `max_in_flight` is counted as dropped."""

from __future__ import annotations

import asyncio
import json
import random
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field

import httpx

from hotdeal_core.signature import sign
from loadtest.buyers import BuyerAuth


@dataclass(frozen=True)
class LoadConfig:
    api_url: str
    product_id: int
    secret: str
    rate: float  # orders per second
    buyers: int = 20_000  # the pool of buyer ids
    pay_success: float = 0.6
    pay_fail: float = 0.15  # the rest never pay: their reservations expire
    pay_delay: float = 2.0  # a buyer pays within this many seconds of its 202
    timeout: float = 10.0
    # Requests waiting at once, one connection each: httpx's pool queues more in a list it
    # scans per request, which on a stall turns the generator itself quadratic (seen).
    max_in_flight: int = 256


@dataclass
class Tally:
    """What the buyers saw; the sampler (another thread) drains `latencies` and `paid`, the
    deal loop (another thread) waits on `sold_out`."""

    latencies: list[float] = field(default_factory=list)  # s, POST /orders, since last drain
    outcomes: Counter[str] = field(default_factory=Counter)  # "202", "409 sold_out", ...
    # deal id (0: no deal on sale, an ordinary order) -> order ids
    accepted: dict[int, set[str]] = field(default_factory=dict)
    payments: dict[str, tuple[str, str]] = field(default_factory=dict)  # pay id -> order, status
    paid: dict[str, float] = field(default_factory=dict)  # order id -> webhook sent (wall)
    pay_errors: Counter[str] = field(default_factory=Counter)
    dropped: int = 0
    sold_out: threading.Event = field(default_factory=threading.Event)
    # The scheduled send (monotonic) of the latest request answered sold_out: an answer
    # to a request sent before a deal opened is the previous deal's.
    sold_out_sent: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add_latency(self, seconds: float) -> None:
        with self.lock:
            self.latencies.append(seconds)

    def drain_latencies(self) -> list[float]:
        with self.lock:
            out, self.latencies = self.latencies, []
        return out

    def add_paid(self, order_id: str, sent: float) -> None:
        with self.lock:
            self.paid[order_id] = sent

    def take_paid(self, order_ids: list[str]) -> dict[str, float]:
        with self.lock:
            return {i: t for i in order_ids if (t := self.paid.pop(i, None)) is not None}

    def waiting_paid(self) -> list[str]:
        with self.lock:
            return list(self.paid)


def _code(resp: httpx.Response) -> str:
    try:
        err = resp.json().get("error")
    except (ValueError, AttributeError):
        return ""
    return str(err.get("code", "")) if isinstance(err, dict) else ""


def _limits(connections: int) -> httpx.Limits:
    """An idle connection is dropped before the server's keep-alive (uvicorn: 5 s) can close
    it under a request being sent (httpx's default expiry, 5 s too, races it: ReadError)."""
    return httpx.Limits(max_connections=connections, keepalive_expiry=2.0)


class OpenLoop:
    def __init__(self, cfg: LoadConfig, auth: BuyerAuth, tally: Tally) -> None:
        self.cfg, self.auth, self.tally = cfg, auth, tally
        self.client = httpx.AsyncClient(base_url=cfg.api_url, timeout=cfg.timeout,
                                        limits=_limits(cfg.max_in_flight))
        self.tasks: set[asyncio.Task[None]] = set()
        self.stopping = asyncio.Event()

    async def run(self) -> None:
        """Arrivals until stop(); then waits for the requests (and payments) in flight."""
        loop = asyncio.get_running_loop()
        interval, n, start = 1.0 / self.cfg.rate, 0, loop.time()
        try:
            while not self.stopping.is_set():
                due = start + n * interval
                if due > loop.time():
                    await asyncio.sleep(due - loop.time())
                n += 1
                if len(self.tasks) >= self.cfg.max_in_flight:
                    self.tally.dropped += 1
                    continue
                task = asyncio.create_task(self._order(due))
                self.tasks.add(task)
                task.add_done_callback(self.tasks.discard)
            if self.tasks:
                await asyncio.wait(set(self.tasks), timeout=self.cfg.timeout + self.cfg.pay_delay
                                   + 30)
        finally:
            await self.client.aclose()

    def stop(self) -> None:
        self.stopping.set()

    async def _order(self, due: float) -> None:
        try:
            await self._order_and_pay(due)
        except Exception as exc:  # noqa: BLE001 - a generator bug fails the run's checks
            self.tally.outcomes[f"error in the generator: {type(exc).__name__}: {exc}"] += 1

    async def _order_and_pay(self, due: float) -> None:
        loop = asyncio.get_running_loop()
        buyer = f"soak-{random.randint(1, self.cfg.buyers)}"
        headers = {"Idempotency-Key": str(uuid.uuid4()), **self.auth.header(buyer)}
        body = {"product_id": self.cfg.product_id, "user_id": buyer, "quantity": 1}
        try:
            resp = await self.client.post("/orders", json=body, headers=headers)
        except (httpx.HTTPError, OSError) as exc:
            self.tally.outcomes[f"error {type(exc).__name__}"] += 1
            return
        self.tally.add_latency(loop.time() - due)
        code = _code(resp)
        self.tally.outcomes[f"{resp.status_code} {code}".strip()] += 1
        if resp.status_code == 409 and code == "sold_out":
            self.tally.sold_out_sent = max(self.tally.sold_out_sent, due)
            self.tally.sold_out.set()
        if resp.status_code != 202:
            return
        order = resp.json()
        self.tally.accepted.setdefault(int(order["hot_deal_id"] or 0), set()).add(order["order_id"])
        roll = random.random()
        if roll < self.cfg.pay_success + self.cfg.pay_fail:
            await asyncio.sleep(random.uniform(0, self.cfg.pay_delay))
            await self._pay(str(order["order_id"]), int(order["total"]),
                            "succeeded" if roll < self.cfg.pay_success else "failed")

    async def _pay(self, order_id: str, total: int, status: str) -> None:
        payment_id = f"pay-{uuid.uuid4()}"
        raw = json.dumps({"payment_id": payment_id, "order_id": order_id, "status": status,
                          "amount": total}, separators=(",", ":")).encode()
        sent = time.time()
        try:
            resp = await self.client.post("/payments/webhook", content=raw, headers={
                "Content-Type": "application/json",
                "X-Payment-Signature": sign(self.cfg.secret, int(sent), raw)})
        except (httpx.HTTPError, OSError) as exc:
            self.tally.pay_errors[type(exc).__name__] += 1
            return
        if resp.status_code != 200:
            self.tally.pay_errors[f"{resp.status_code} {_code(resp)}"] += 1
            return
        self.tally.payments[payment_id] = (order_id, status)
        if status == "succeeded":
            self.tally.add_paid(order_id, sent)


async def measure_capacity(cfg: LoadConfig, auth: BuyerAuth, seconds: float,
                           concurrency: int = 32) -> float:
    """Answers per second (any status) of `concurrency` closed-loop clients for `seconds`:
    what the API (and this generator, on the same machine) can do at most."""
    answered = 0
    async with httpx.AsyncClient(base_url=cfg.api_url, timeout=cfg.timeout,
                                 limits=_limits(concurrency)) as client:
        loop = asyncio.get_running_loop()
        end = loop.time() + seconds

        async def one() -> None:
            nonlocal answered
            while loop.time() < end:
                buyer = f"cap-{random.randint(1, cfg.buyers)}"
                try:
                    await client.post("/orders", headers={
                        "Idempotency-Key": str(uuid.uuid4()), **auth.header(buyer)},
                        json={"product_id": cfg.product_id, "user_id": buyer, "quantity": 1})
                    answered += 1
                except (httpx.HTTPError, OSError):
                    pass
        began = loop.time()
        await asyncio.gather(*(one() for _ in range(concurrency)))
        return answered / max(loop.time() - began, 1e-9)
