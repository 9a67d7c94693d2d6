"""The order rate limits (order_api/limits.py): GCRA rates and bursts on an injected clock,
Retry-After from the limiter's wait, a bounded memory, the client address (a forwarded
header only when a setting says so), and the fast path's address refusal before the body."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest
import uvicorn
from starlette.datastructures import State
from starlette.types import Message, Receive, Scope, Send
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from hotdeal_core.errors import TooManyRequests
from hotdeal_core.settings import Settings
from order_api import servers
from order_api.fastpath import SoldOutFastPath
from order_api.limits import MAX_KEYS, OrderLimits, RateLimiter, retry_after
from order_api.observe import OUTCOME


class Clock:
    """A hand-moved monotonic clock."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _admitted(limiter: RateLimiter, key: str, times: int) -> int:
    return sum(limiter.wait(key) == 0.0 for _ in range(times))


def test_a_burst_is_admitted_at_once_then_one_request_per_interval() -> None:
    clock = Clock()
    limiter = RateLimiter(2.0, 5, clock=clock)
    assert _admitted(limiter, "b", 5) == 5
    assert limiter.wait("b") == pytest.approx(0.5)  # the next one is due in 1/rate
    clock.now += 0.5
    assert _admitted(limiter, "b", 3) == 1
    clock.now += 10  # idle long enough: the whole burst again, not more
    assert _admitted(limiter, "b", 9) == 5


@pytest.mark.parametrize(("rate", "burst"), [(3.0, 1), (3.0, 2), (0.7, 5), (0.001, 1)])
def test_the_whole_burst_is_admitted_at_any_clock_reading(rate: float, burst: int) -> None:
    clock = Clock()
    readings = random.Random(7)
    for _ in range(2000):  # float sums of clock and interval round differently at each
        clock.now = readings.uniform(0, 1e6)
        limiter = RateLimiter(rate, burst, clock=clock)
        assert _admitted(limiter, "b", burst + 1) == burst, clock.now


def test_a_refused_request_counts_nothing() -> None:
    clock = Clock()
    limiter = RateLimiter(1.0, 1, clock=clock)
    assert limiter.wait("b") == 0.0
    clock.now += 0.5
    assert _admitted(limiter, "b", 1000) == 0  # a flood of refusals...
    clock.now += 0.5
    assert limiter.wait("b") == 0.0  # ...does not push the buyer's next turn back


def test_each_key_has_its_own_budget() -> None:
    limiter = RateLimiter(1.0, 2, clock=Clock())
    assert _admitted(limiter, "flooder", 50) == 2
    assert _admitted(limiter, "other", 2) == 2


@pytest.mark.parametrize(("wait", "seconds"), [(0.001, 1), (0.5, 1), (1.0, 1), (1.01, 2),
                                               (9.5, 10)])
def test_retry_after_is_the_wait_in_whole_seconds_rounded_up_and_at_least_one(
        wait: float, seconds: int) -> None:
    assert retry_after(wait) == seconds


def test_a_refusal_says_when_the_limiter_will_admit_the_buyer() -> None:
    clock = Clock()
    limits = OrderLimits(RateLimiter(0.1, 1, clock=clock), None)  # one every 10 s
    limits.check_buyer("b")
    clock.now += 2.5
    with pytest.raises(TooManyRequests) as refused:
        limits.check_buyer("b")
    assert refused.value.code == "rate_limited" and refused.value.http_status == 429
    assert refused.value.retry_after == 8  # 7.5 s left, rounded up
    clock.now += 7.5
    limits.check_buyer("b")  # admitted when Retry-After said


def test_idle_keys_are_forgotten_as_new_ones_arrive() -> None:
    clock = Clock()
    limiter = RateLimiter(2.0, 5, clock=clock)
    for i in range(1000):
        limiter.wait(f"old-{i}")
    assert len(limiter) == 1000
    clock.now += 1  # each old key was idle after 0.5 s
    for i in range(300):
        limiter.wait(f"new-{i}")
    assert len(limiter) == 300  # only the keys still within their burst window are kept


def test_memory_stays_bounded_under_more_distinct_keys_than_the_cap() -> None:
    limiter = RateLimiter(2.0, 5, clock=Clock())  # one instant: no key ever goes idle
    for i in range(MAX_KEYS + 20_000):
        assert limiter.wait(f"buyer-{i}") == 0.0
    assert len(limiter) == MAX_KEYS
    assert limiter.wait(f"buyer-{MAX_KEYS + 19_999}") == 0.0  # the newest are kept
    assert len(limiter) == MAX_KEYS


def test_a_rate_of_zero_disables_the_limit() -> None:
    limits = OrderLimits.from_settings(Settings(_env_file=None, order_rate_per_buyer=0))
    assert limits.per_buyer is None and limits.per_address is None  # address: off by default
    for _ in range(100):
        limits.check_buyer("b")
        limits.check_address(_scope())


def test_the_settings_give_each_limit_its_rate_and_burst() -> None:
    limits = OrderLimits.from_settings(Settings(
        _env_file=None, order_rate_per_buyer=1, order_burst_per_buyer=3,
        order_rate_per_address=1, order_burst_per_address=4))
    assert limits.per_buyer is not None and limits.per_address is not None
    assert _admitted(limits.per_buyer, "b", 10) == 3
    assert _admitted(limits.per_address, "a", 10) == 4


# ------------------------------------------------------------------ the client's address
def _scope(*headers: tuple[bytes, bytes], peer: str = "10.0.0.9") -> Scope:
    return {"type": "http", "method": "POST", "path": "/orders", "client": (peer, 41000),
            "headers": [(b"content-type", b"application/json"), *headers]}


XFF = b"x-forwarded-for"


def test_a_forwarded_header_is_ignored_without_the_setting() -> None:
    limits = OrderLimits(None, None)
    assert limits.client_address(_scope((XFF, b"203.0.113.7"))) == "10.0.0.9"


@pytest.mark.parametrize(("headers", "hops", "address"), [
    ([(XFF, b"198.51.100.1, 203.0.113.7")], 1, "203.0.113.7"),  # the right-most
    ([(XFF, b"198.51.100.1, 203.0.113.7")], 2, "198.51.100.1"),
    ([(XFF, b"198.51.100.1"), (XFF, b"203.0.113.7,192.0.2.4")], 2, "203.0.113.7"),
    ([(XFF, b"203.0.113.7")], 2, "10.0.0.9"),  # fewer entries than hops: the peer
    ([(XFF, b"")], 1, "10.0.0.9"),
    ([], 1, "10.0.0.9"),  # no header: the peer
])
def test_with_the_setting_the_address_is_that_many_hops_from_the_right(
        headers: list[tuple[bytes, bytes]], hops: int, address: str) -> None:
    limits = OrderLimits(None, None, "X-Forwarded-For", hops)
    assert limits.client_address(_scope(*headers)) == address


def test_uvicorn_does_not_rewrite_the_client_address_from_forwarded_headers(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Else a client on the proxy's host (127.0.0.1, uvicorn's default) could pick its
    address with X-Forwarded-For whatever TRUSTED_CLIENT_IP_HEADER says."""
    calls: list[dict[str, Any]] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        return None
    monkeypatch.setattr(uvicorn, "run", lambda target, **kw: calls.append(kw))
    servers.serve("uvicorn", "order_api.asgi:app", lambda: app, host="127.0.0.1", port=1,
                  workers=1)
    config = uvicorn.Config(app, **calls[0])
    config.load()
    assert not isinstance(config.loaded_app, ProxyHeadersMiddleware)
    inner = getattr(config.loaded_app, "app", None)
    assert not isinstance(inner, ProxyHeadersMiddleware)


# ------------------------------------------------------------------ the fast path
async def test_an_address_over_its_rate_is_refused_before_its_body_is_read() -> None:
    state = State()
    state.order_limits = OrderLimits(None, RateLimiter(0.5, 1, clock=Clock()))
    reads: list[int] = []

    async def receive() -> Message:
        reads.append(1)
        return {"type": "http.request", "body": b"{}", "more_body": False}

    async def downstream(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        await send({"type": "http.response.start", "status": 422, "headers": []})
        await send({"type": "http.response.body", "body": b""})
    app = SoldOutFastPath(downstream, state)
    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)
    await app(_scope(), receive, send)  # the first one goes on (no ctx yet: to FastAPI)
    assert sent[0]["status"] == 422 and reads == [1]
    sent.clear()
    scope = _scope()
    await app(scope, receive, send)
    assert reads == [1]  # nothing read of the second request
    assert sent[0]["status"] == 429 and scope[OUTCOME] == "rate_limited"
    assert (b"retry-after", b"2") in sent[0]["headers"]
    assert json.loads(sent[1]["body"])["error"]["code"] == "rate_limited"
