"""Payment webhook signatures: `X-Payment-Signature: t=<unix s>,v1=<hex HMAC-SHA256>`,
signed over "<t>.<raw body>" with PAYMENT_WEBHOOK_SECRET (the Stripe scheme)."""

from __future__ import annotations

import hashlib
import hmac

from hotdeal_core.errors import Unauthorized


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
    try:
        timestamp = int(parts["t"][0])
    except (KeyError, ValueError):
        raise Unauthorized("bad_signature", "signature header has no valid timestamp") from None
    if abs(now - timestamp) > tolerance:
        raise Unauthorized("bad_signature", "signature timestamp outside the tolerance window")
    expected = sign(secret, timestamp, body).split("v1=", 1)[1]
    if not any(hmac.compare_digest(expected, given) for given in parts.get("v1", [])):
        raise Unauthorized("bad_signature", "signature does not match")
