"""The chaos run's buyers: clients that retry one request (same Idempotency-Key, same body)
until a 202 or a business 409 settles it, then pay, fail to pay or never pay, by ratio; every
attempt is recorded, so the report can tell per fault window what failed and when it healed."""

from __future__ import annotations

import asyncio
import json
import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from hotdeal_core.observability.outcomes import BUSINESS_REFUSALS, error_code
from hotdeal_core.signature import sign
from loadtest.buyers import BuyerAuth


@dataclass(frozen=True)
class Attempt:
    kind: str  # "order" | "payment"
    sent: float  # seconds since the run's start
    latency: float
    status: int  # 0: no response (connection error, timeout)
    code: str | None  # error.code of the body, or the exception's class name
    retry_after: str | None


@dataclass(frozen=True)
class LoadConfig:
    api_url: str
    product_id: int
    secret: str
    buyers: int = 30  # concurrent clients
    buyer_ids: int = 2000  # distinct user ids they order as
    pay_success: float = 0.7
    pay_fail: float = 0.15
    think: float = 0.05  # seconds between a settled order and the next
    timeout: float = 5.0  # per attempt
    max_retry_wait: float = 1.0  # cap on Retry-After between retries
    give_up_after: float = 120.0  # a request still unanswered then is reported, not retried


@dataclass
class Ledger:
    """What the clients saw: every attempt, and the promises to check afterwards."""

    t0: float = field(default_factory=time.monotonic)
    t0_wall: float = field(default_factory=time.time)  # the same instant, on the wall clock
    attempts: list[Attempt] = field(default_factory=list)
    key_orders: dict[str, set[str]] = field(default_factory=dict)  # idempotency key -> ids
    accepted: set[str] = field(default_factory=set)
    payments: dict[str, tuple[str, str]] = field(default_factory=dict)  # pay id -> order, status
    accepted_at: list[float] = field(default_factory=list)  # send times of 202s
    given_up: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)  # a 4xx no retry can change: a bug here

    def now(self) -> float:
        return time.monotonic() - self.t0


def _code(resp: httpx.Response) -> str | None:
    try:
        return error_code(resp.json())
    except ValueError:
        return None


async def _attempt(ledger: Ledger, kind: str, send: Callable[[], Any],
                   timeout: float) -> tuple[httpx.Response | None, Attempt]:
    sent = ledger.now()
    try:
        resp: httpx.Response = await asyncio.wait_for(send(), timeout)
    except (httpx.HTTPError, TimeoutError, OSError) as exc:
        attempt = Attempt(kind, sent, ledger.now() - sent, 0, type(exc).__name__, None)
        ledger.attempts.append(attempt)
        return None, attempt
    attempt = Attempt(kind, sent, ledger.now() - sent, resp.status_code, _code(resp),
                      resp.headers.get("retry-after"))
    ledger.attempts.append(attempt)
    return resp, attempt


def _definitive(resp: httpx.Response) -> bool:
    """An answer no retry of the same request can change: a success, or a 4xx other than
    "the same key is still being written"."""
    if resp.status_code in (200, 202):
        return True
    return 400 <= resp.status_code < 500 and _code(resp) != "idempotency_in_progress"


def user_id(n: int) -> str:
    return f"chaos-{n}"


def _wait_before_retry(resp: httpx.Response | None, cap: float) -> float:
    if resp is not None and resp.status_code == 503:
        try:
            return min(float(resp.headers.get("retry-after", "1")), cap) * random.uniform(0.5, 1)
        except ValueError:
            return cap
    return random.uniform(0.05, 0.25)


class Buyers:
    def __init__(self, cfg: LoadConfig, ledger: Ledger, auth: BuyerAuth,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.cfg, self.ledger = cfg, ledger
        self.auth = {user: auth.header(user) for user in map(user_id, range(1, cfg.buyer_ids + 1))}
        self.stopping = asyncio.Event()
        self.client = httpx.AsyncClient(base_url=cfg.api_url, timeout=cfg.timeout,
                                        limits=httpx.Limits(max_connections=cfg.buyers * 2),
                                        transport=transport)

    async def run(self) -> None:
        try:
            await asyncio.gather(*(self._buyer() for _ in range(self.cfg.buyers)))
        finally:
            await self.client.aclose()

    def stop(self) -> None:
        self.stopping.set()

    async def _buyer(self) -> None:
        while not self.stopping.is_set():
            user = user_id(random.randint(1, self.cfg.buyer_ids))
            order = await self._order(user)
            if order is not None:
                await self._pay(*order)
            await asyncio.sleep(self.cfg.think)

    async def _until_settled(self, kind: str, ref: str, send: Callable[[], Any],
                             settled: Callable[[httpx.Response], bool],
                             ) -> tuple[httpx.Response, Attempt] | None:
        began = self.ledger.now()
        while True:
            resp, attempt = await _attempt(self.ledger, kind, send, self.cfg.timeout)
            if resp is not None and settled(resp):
                return resp, attempt
            if self.ledger.now() - began > self.cfg.give_up_after:
                self.ledger.given_up.append(f"{kind} {ref}")
                return None
            await asyncio.sleep(_wait_before_retry(resp, self.cfg.max_retry_wait))

    async def _order(self, user: str) -> tuple[str, int] | None:
        key = str(uuid.uuid4())
        body = {"product_id": self.cfg.product_id, "user_id": user, "quantity": 1}

        headers = {"Idempotency-Key": key, **self.auth[user]}

        def send() -> Any:
            return self.client.post("/orders", json=body, headers=headers)

        answer = await self._until_settled("order", key, send, _definitive)
        if answer is None or answer[0].status_code != 202:
            if answer is not None and _code(answer[0]) not in BUSINESS_REFUSALS:
                self.ledger.refused.append(f"order {key}: {answer[0].status_code} "
                                           f"{_code(answer[0])}")
            return None
        resp, attempt = answer
        payload = resp.json()
        order_id, total = str(payload["order_id"]), int(payload["total"])
        self.ledger.key_orders.setdefault(key, set()).add(order_id)
        self.ledger.accepted.add(order_id)
        self.ledger.accepted_at.append(attempt.sent)
        if random.random() < 0.05:  # a client that retries after its answer was lost
            again, _ = await _attempt(self.ledger, "order", send, self.cfg.timeout)
            if again is not None and again.status_code == 202:
                self.ledger.key_orders[key].add(str(again.json()["order_id"]))
        return order_id, total

    async def _pay(self, order_id: str, total: int) -> None:
        roll = random.random()
        if roll >= self.cfg.pay_success + self.cfg.pay_fail:
            return  # never pays: the reservation expires
        status = "succeeded" if roll < self.cfg.pay_success else "failed"
        payment_id = f"pay-{uuid.uuid4()}"
        raw = json.dumps({"payment_id": payment_id, "order_id": order_id, "status": status,
                          "amount": total}, separators=(",", ":")).encode()

        def send() -> Any:  # a provider re-signs every delivery of the same payment
            sig = sign(self.cfg.secret, int(time.time()), raw)
            return self.client.post("/payments/webhook", content=raw, headers={
                "Content-Type": "application/json", "X-Payment-Signature": sig})
        answer = await self._until_settled("payment", payment_id, send, _definitive)
        if answer is not None and answer[0].status_code != 200:
            self.ledger.refused.append(f"payment {payment_id}: {answer[0].status_code} "
                                       f"{_code(answer[0])}")
        elif answer is not None:
            self.ledger.payments[payment_id] = (order_id, status)
