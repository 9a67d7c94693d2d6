"""Payment webhook signatures: `X-Payment-Signature: t=<unix s>,v1=<hex HMAC-SHA256>`,
signed over "<t>.<raw body>" with PAYMENT_WEBHOOK_SECRET (the Stripe scheme)."""

from __future__ import annotations

import hashlib
import hmac
import re

from hotdeal_core.errors import Unauthorized

# Plain ASCII digits, short enough to compare with a float clock: int() alone would take
# "+1_0", Arabic-Indic digits, or 400 digits (an OverflowError against time.time()).
_TIMESTAMP = re.compile(r"[0-9]{1,15}")


def sign(secret: str, timestamp: int, body: bytes) -> str:
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def verify(secret: str, header: str | None, body: bytes, now: float, tolerance: int) -> None:
    """Raise Unauthorized unless the header signs this body, within `tolerance` seconds."""
    if not header:
        raise Unauthorized("bad_signature", "missing X-Payment-Signature header")
    parts: dict[str, list[str]] = {}
    for item in header.split(","):
        name, sep, value = item.strip().partition("=")
        if sep:
            parts.setdefault(name, []).append(value)
    given_t = parts.get("t", [""])[0]
    if not _TIMESTAMP.fullmatch(given_t):
        raise Unauthorized("bad_signature", "signature header has no valid timestamp")
    timestamp = int(given_t)
    if abs(now - timestamp) > tolerance:
        raise Unauthorized("bad_signature", "signature timestamp outside the tolerance window")
    expected = sign(secret, timestamp, body).split("v1=", 1)[1]
    # A hex digest is ASCII, and compare_digest raises TypeError on non-ASCII str.
    if not any(given.isascii() and hmac.compare_digest(expected, given)
               for given in parts.get("v1", [])):
        raise Unauthorized("bad_signature", "signature does not match")
