"""What buyer identity costs per request (order_api/buyers.py, hotdeal_core/identity.py),
in-process, without services.

    .venv/bin/python -m benchmarks.buyer_identity [--calls 20000] [--runs 5]

1. The token check alone: `BuyerTokens.buyer` on a cached token, and verified every time
   (HS256, and EdDSA with a generated key).
2. `POST /orders` answered by the fast path (a memo'd sold-out refusal: no I/O, the path
   where per-request overhead shows most) with the token check, and with it replaced by a
   constant buyer (what the request cost before identity), alternately; the difference.
Prints the fastest and the median of the runs (the fastest is the least disturbed).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from starlette.datastructures import State

from hotdeal_core.identity import BuyerTokens, TokenMinter
from hotdeal_core.settings import Settings
from hotdeal_core.stock.sold_out import SoldOutMemo
from order_api import fastpath
from order_api.fastpath import SoldOutFastPath

BODY = b'{"product_id": 7, "quantity": 1}'


def _per_call_sync(fn: Callable[[], object], calls: int) -> float:
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - start) / calls * 1e6


def _eddsa(dev: Settings) -> tuple[BuyerTokens, str]:
    """An uncached EdDSA verifier and a token it accepts (keys generated here)."""
    key = ed25519.Ed25519PrivateKey.generate()
    folder = Path(tempfile.mkdtemp(prefix="hotdeal-bench-"))
    (folder / "private.pem").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    (folder / "public.pem").write_bytes(key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    settings = dev.model_copy(update={
        "buyer_token_algorithm": "EdDSA", "buyer_token_cache_size": 0,
        "buyer_token_public_key_file": str(folder / "public.pem"),
        "buyer_token_private_key_file": str(folder / "private.pem")})
    return BuyerTokens(settings), TokenMinter(settings).token("buyer-1")


def verification(calls: int, runs: int) -> None:
    dev = Settings(_env_file=None, allow_dev_secrets=True)
    token = TokenMinter(dev).token("buyer-1")
    cached = BuyerTokens(dev)
    uncached = BuyerTokens(dev.model_copy(update={"buyer_token_cache_size": 0}))
    eddsa, eddsa_token = _eddsa(dev)
    for name, fn in (("cached", lambda: cached.buyer(token)),
                     ("HS256 uncached", lambda: uncached.buyer(token)),
                     ("EdDSA uncached", lambda: eddsa.buyer(eddsa_token))):
        times = [_per_call_sync(fn, calls) for _ in range(runs)]
        print(f"token check, {name}: {min(times):.2f} us (median {statistics.median(times):.2f})")


async def _send(message: Any) -> None:
    return None


async def _receive() -> dict[str, Any]:
    return {"type": "http.request", "body": BODY, "more_body": False}


async def _downstream(scope: Any, receive: Any, send: Any) -> None:
    raise AssertionError("the fast path answers every request here")


async def _per_call(app: SoldOutFastPath, headers: list[tuple[bytes, bytes]],
                    calls: int) -> float:
    start = time.perf_counter()
    for _ in range(calls):
        await app({"type": "http", "method": "POST", "path": "/orders", "headers": headers},
                  _receive, _send)
    return (time.perf_counter() - start) / calls * 1e6


async def fast_path(calls: int, runs: int, cache: bool) -> None:
    dev = Settings(_env_file=None, allow_dev_secrets=True,
                   buyer_token_cache_size=100_000 if cache else 0)
    memo = SoldOutMemo(3_600_000)
    memo.remember(7)
    state = State()
    state.ctx = type("Ctx", (), {"sold_out": memo})()
    state.buyer_tokens = BuyerTokens(dev)
    app = SoldOutFastPath(_downstream, state)
    token = TokenMinter(dev).token("buyer-1")
    headers = [(b"content-type", b"application/json"),
               (b"authorization", f"Bearer {token}".encode())]
    names = vars(fastpath)  # the fast path's global `authenticate`, swapped per run
    checked = names["authenticate"]

    def constant(state: State, scope: Any) -> str:  # identity as it was: no check at all
        return "buyer-1"
    added = []
    for _ in range(runs):
        names["authenticate"] = constant
        before = await _per_call(app, headers, calls)
        names["authenticate"] = checked
        added.append((await _per_call(app, headers, calls) - before, before))
    best = min(added)
    print(f"POST /orders (fast path sold-out), token {'cached' if cache else 'uncached'}: "
          f"+{best[0]:.2f} us per request over {best[1]:.2f} us without identity "
          f"(median +{statistics.median(a for a, _ in added):.2f} us; {runs} runs of {calls:,})")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    verification(args.calls, args.runs)
    asyncio.run(fast_path(args.calls, args.runs, cache=True))
    asyncio.run(fast_path(args.calls, args.runs, cache=False))
