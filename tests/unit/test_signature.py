"""Payment webhook signatures: whatever the header holds, a bad one is Unauthorized
(401 bad_signature), never an exception of another kind (a 500)."""

from __future__ import annotations

import pytest

from hotdeal_core import signature
from hotdeal_core.errors import Unauthorized

SECRET = "unit-test-secret"
BODY = b'{"payment_id": "p-1"}'
NOW = 1_700_000_000
CLOCK = float(NOW)  # the route passes time.time(), a float


def test_a_fresh_signature_of_the_body_passes() -> None:
    signature.verify(SECRET, signature.sign(SECRET, NOW, BODY), BODY, CLOCK + 5, 300)


def test_a_stray_non_ascii_v1_beside_the_right_one_still_passes() -> None:
    timestamp, good = signature.sign(SECRET, NOW, BODY).split(",")
    signature.verify(SECRET, f"{timestamp},v1=\u00e9\u00e9,{good}", BODY, CLOCK, 300)


@pytest.mark.parametrize("header", [
    "",
    "v1=abc",
    "t=abc,v1=abc",
    # An integer too large for a float: OverflowError when compared with the clock.
    "t=1" + "0" * 400 + ",v1=abc",
    # More digits than int() accepts (ValueError, 4300-digit limit).
    "t=1" + "0" * 5000,
    f"t=-{NOW},v1=abc",
    # Not ASCII digits, although int() would read them as 1700000000.
    "t=\u0661\u0667\u0660\u0660\u0660\u0660\u0660\u0660\u0660\u0660,v1=abc",
    # hmac.compare_digest refuses non-ASCII str with a TypeError.
    f"t={NOW},v1=" + "\u00e9" * 64,
    f"t={NOW},v1=\u00ff",
    f"t={NOW},v1=" + "0" * 64,
    f"t={NOW - 301},v1=abc",
])
def test_a_bad_header_is_a_bad_signature(header: str) -> None:
    with pytest.raises(Unauthorized) as refused:
        signature.verify(SECRET, header, BODY, CLOCK, 300)
    assert refused.value.code == "bad_signature"


def test_a_signature_of_another_body_is_refused() -> None:
    with pytest.raises(Unauthorized):
        signature.verify(SECRET, signature.sign(SECRET, NOW, b"{}"), BODY, CLOCK, 300)
