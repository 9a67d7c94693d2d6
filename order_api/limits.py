"""Order rate limits per buyer and per client address: `429 rate_limited` with Retry-After,
before any stock work; per process, on purpose (docs/architecture.md, "Rate limits")."""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable

from starlette.datastructures import State
from starlette.types import Scope

from hotdeal_core.errors import TooManyRequests
from hotdeal_core.settings import Settings

# Keys kept per limiter at most (about 150 bytes each): past it the key admitted longest
# ago is forgotten even if not yet idle (it gets its burst again: a flood of distinct keys
# cannot grow memory, and each of those keys was within its rate when last seen).
MAX_KEYS = 100_000
# Float sums of clock readings and intervals drift by a few ulps: without this margin the
# last request of a burst is refused at about 65 % of clock readings at 3/s (measured).
_ROUNDING = 1e-6
_SWEEP = 4  # idle keys forgotten per admission at most (amortised; no pause on a backlog)
_MAX_ADDRESS = 64  # characters of a client address kept as a key (an IPv6 text is <= 45)
BUYER_MESSAGE = "too many order requests from this buyer; retry after Retry-After seconds"
ADDRESS_MESSAGE = "too many order requests from this address; retry after Retry-After seconds"


class RateLimiter:
    """`rate` requests a second per key, `burst` of them at once (GCRA): a request is admitted
    while its key's theoretical arrival time is at most `burst - 1` intervals ahead of now,
    and moves it one interval on. A refusal counts nothing."""

    __slots__ = ("_clock", "_interval", "_max_keys", "_slack", "_tats")

    def __init__(self, rate: float, burst: int, *, max_keys: int = MAX_KEYS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if rate <= 0 or burst < 1 or max_keys < 1:
            raise ValueError("rate > 0, burst >= 1 and max_keys >= 1 are required")
        self._interval = 1.0 / rate
        self._slack = self._interval * (burst - 1)
        # key -> theoretical arrival time, oldest admission first (move_to_end on each);
        # a key whose time has passed is idle: forgetting it changes no answer.
        self._tats: OrderedDict[str, float] = OrderedDict()
        self._max_keys = max_keys
        self._clock = clock

    def __len__(self) -> int:
        return len(self._tats)

    def wait(self, key: str) -> float:
        """0.0 if `key` may go now (and it is counted), else the seconds until it may."""
        now = self._clock()
        tats = self._tats
        tat = tats.get(key, now)
        ahead = tat - now if tat > now else 0.0
        if ahead > self._slack + _ROUNDING:
            return ahead - self._slack
        tats[key] = now + ahead + self._interval
        tats.move_to_end(key)
        # Forget idle keys, oldest admission first, up to the first busy one: the keys behind
        # it were admitted after it, so less than burst/rate seconds ago; that bounds what
        # is kept by the admissions of the last burst/rate seconds (and by max_keys).
        for _ in range(_SWEEP):
            oldest = next(iter(tats))
            if tats[oldest] > now and len(tats) <= self._max_keys:
                break
            del tats[oldest]
        return 0.0


def retry_after(wait: float) -> int:
    """Retry-After's whole seconds for a wait: rounded up, at least 1."""
    return max(1, math.ceil(wait))


def _limiter(rate: float, burst: int) -> RateLimiter | None:
    return RateLimiter(rate, burst) if rate > 0 else None  # 0 disables


class OrderLimits:
    """The two limits of `POST /orders`; `check_*` raise TooManyRequests (429)."""

    def __init__(self, per_buyer: RateLimiter | None, per_address: RateLimiter | None,
                 trusted_header: str | None = None, proxy_hops: int = 1) -> None:
        self.per_buyer = per_buyer
        self.per_address = per_address
        self._header = trusted_header.strip().lower().encode("latin-1") \
            if trusted_header else None
        self._hops = proxy_hops

    @classmethod
    def from_settings(cls, settings: Settings) -> OrderLimits:
        return cls(_limiter(settings.order_rate_per_buyer, settings.order_burst_per_buyer),
                   _limiter(settings.order_rate_per_address,
                            settings.order_burst_per_address),
                   settings.trusted_client_ip_header, settings.trusted_proxy_hops)

    def check_buyer(self, buyer: str) -> None:
        if self.per_buyer is not None:
            wait = self.per_buyer.wait(buyer)
            if wait:
                raise TooManyRequests("rate_limited", BUYER_MESSAGE, retry_after(wait))

    def check_address(self, scope: Scope) -> None:
        if self.per_address is not None:
            wait = self.per_address.wait(self.client_address(scope))
            if wait:
                raise TooManyRequests("rate_limited", ADDRESS_MESSAGE, retry_after(wait))

    def client_address(self, scope: Scope) -> str:
        """The socket peer's address; with TRUSTED_CLIENT_IP_HEADER, the entry TRUSTED_PROXY_HOPS
        from the right of that header, as werkzeug's ProxyFix(x_for=N) does (too few entries: the
        peer's address)."""
        if self._header is not None:
            values = [value for name, value in scope["headers"] if name == self._header]
            if values:
                entries = b",".join(values).split(b",")
                if len(entries) >= self._hops:
                    entry = entries[-self._hops].strip()
                    if entry:
                        return entry[:_MAX_ADDRESS].decode("latin-1")
        client = scope.get("client")
        return client[0] if client else ""  # no peer known (a unix socket): one key


def order_limits(state: State) -> OrderLimits:
    """The app's limits (order_api/app.py puts them in its state), for both order paths."""
    limits: OrderLimits = state.order_limits
    return limits
