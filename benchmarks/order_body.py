"""Per-call µs of reading a `POST /orders` body: the hand parse the fast path had (frozen
here), PlaceOrderRequest on the raw bytes (the fast path now), json.loads + the model (the
route). `python -m benchmarks.order_body [--calls 50000] [--runs 5]`."""

from __future__ import annotations

import argparse
import json
import re
import statistics
import time
from collections.abc import Callable
from typing import Any

from pydantic import ValidationError

from devtools.tables import markdown_table
from schemas.http import BIGINT_LIMIT, MAX_ORDER_QUANTITY, PlaceOrderRequest

BODIES = {
    "valid": b'{"product_id": 7, "user_id": "buyer-000123", "quantity": 1}',
    "valid, no user_id": b'{"product_id": 7, "quantity": 1}',
    "invalid (quantity 0)": b'{"product_id": 7, "user_id": "buyer-000123", "quantity": 0}',
    "not JSON": b'{"product_id": 7, "user_id": "buyer-0',
}

# The hand parse of order_api/fastpath.py at 55f219b, the baseline: no code path uses it.
_USER_ID = re.compile(r"[A-Za-z0-9_.:@-]{1,128}")
_FIELDS = frozenset({"product_id", "user_id", "quantity"})
_REQUIRED = frozenset({"product_id", "quantity"})


def hand(body: bytes) -> tuple[int, str | None, int] | None:
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        return None
    if type(data) is not dict or not _REQUIRED <= data.keys() <= _FIELDS:
        return None
    product_id, user_id, quantity = data["product_id"], data.get("user_id"), data["quantity"]
    if type(product_id) is not int or not 1 <= product_id < BIGINT_LIMIT:
        return None
    if type(quantity) is not int or not 1 <= quantity <= MAX_ORDER_QUANTITY:
        return None
    if user_id is not None and (type(user_id) is not str
                                or _USER_ID.fullmatch(user_id) is None):
        return None
    return product_id, user_id, quantity


def model_json(body: bytes) -> PlaceOrderRequest | None:
    try:
        return PlaceOrderRequest.model_validate_json(body)
    except ValidationError:
        return None


def json_then_model(body: bytes) -> PlaceOrderRequest | None:
    try:
        return PlaceOrderRequest.model_validate(json.loads(body))
    except (ValueError, RecursionError, ValidationError):
        return None


WAYS: dict[str, Callable[[bytes], Any]] = {
    "hand": hand, "model json": model_json, "json + model": json_then_model}


def per_call_us(parse: Callable[[bytes], Any], body: bytes, calls: int) -> float:
    start = time.perf_counter()
    for _ in range(calls):
        parse(body)
    return (time.perf_counter() - start) / calls * 1e6


def main(calls: int, runs: int) -> None:
    times: dict[tuple[str, str], list[float]] = {}
    for _ in range(runs):  # interleaved, so a burst of other load falls on every way alike
        for label, body in BODIES.items():
            for way, parse in WAYS.items():
                times.setdefault((label, way), []).append(per_call_us(parse, body, calls))
    rows = [[label, *(f"{min(t):.2f} (median {statistics.median(t):.2f})"
                      for t in (times[label, way] for way in WAYS))] for label in BODIES]
    print(f"µs per call: fastest (median) of {runs} runs of {calls:,}\n")
    print("\n".join(markdown_table(["body", *WAYS], rows, "lrrr")))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=50_000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    main(args.calls, args.runs)
