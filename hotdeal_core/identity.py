"""Buyer identity: the buyer id is the `sub` of a JWT, verified with PyJWT (HS256, EdDSA, ES256)
and cached per process (signature checked once, `exp` on every use); `TokenMinter` signs
development tokens."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import jwt

from hotdeal_core.errors import Unauthorized
from hotdeal_core.settings import InsecureSecrets, Settings

# schemas.http.UserId: a `sub` outside it is no buyer id this system can hold.
BUYER_ID = re.compile(r"[A-Za-z0-9_.:@-]{1,128}")
DEFAULT_TTL_SECONDS = 3600


class InvalidToken(Unauthorized):
    """401 `invalid_token`: missing, malformed, forged, or for another issuer/audience."""

    def __init__(self, message: str) -> None:
        super().__init__("invalid_token", message)


class ExpiredToken(Unauthorized):
    """401 `token_expired`: a genuine token past its `exp` (the client needs a new one)."""

    def __init__(self) -> None:
        super().__init__("token_expired", "the buyer token has expired")


def _verifying_keys(settings: Settings) -> tuple[Any, dict[str, Any]]:
    """(the key, or None with a JWKS) and the JWKS keys by `kid`."""
    if settings.buyer_token_algorithm == "HS256":
        return settings.buyer_token_secret.get_secret_value(), {}
    if not settings.buyer_token_public_key_file:
        raise InsecureSecrets(f"BUYER_TOKEN_ALGORITHM={settings.buyer_token_algorithm} needs "
                              "BUYER_TOKEN_PUBLIC_KEY_FILE")
    text = Path(settings.buyer_token_public_key_file).read_text()
    if text.lstrip().startswith("{"):
        jwks = jwt.PyJWKSet.from_dict(json.loads(text))
        return None, {k.key_id: k.key for k in jwks.keys if k.key_id is not None}
    return jwt.algorithms.get_default_algorithms()[
        settings.buyer_token_algorithm].prepare_key(text), {}


class BuyerTokens:
    """Turns a bearer token into a buyer id, or raises InvalidToken / ExpiredToken."""

    def __init__(self, settings: Settings) -> None:
        self._key, self._jwks = _verifying_keys(settings)
        self._algorithms = [settings.buyer_token_algorithm]
        self._leeway = settings.buyer_token_leeway_seconds
        self._issuer = settings.buyer_token_issuer
        self._audience = settings.buyer_token_audience
        self._max = settings.buyer_token_cache_size
        self._cache: dict[str, tuple[str, float]] = {}  # token -> (buyer, exp)

    def buyer(self, token: str) -> str:
        hit = self._cache.get(token)
        if hit is not None:
            if time.time() <= hit[1] + self._leeway:
                return hit[0]
            del self._cache[token]
            raise ExpiredToken()
        buyer, exp = self._verify(token)
        if self._max:
            if len(self._cache) >= self._max:  # drop the oldest entry (insertion order)
                del self._cache[next(iter(self._cache))]
            self._cache[token] = (buyer, exp)
        return buyer

    def _verify(self, token: str) -> tuple[str, float]:
        try:
            key = self._key
            if key is None:  # a JWKS: the key named by the token's header
                key = self._jwks.get(str(jwt.get_unverified_header(token).get("kid")))
                if key is None:
                    raise InvalidToken("the buyer token names no known key")
            claims = jwt.decode(token, key, algorithms=self._algorithms, leeway=self._leeway,
                                issuer=self._issuer, audience=self._audience,
                                options={"require": ["sub", "exp"]})
        except jwt.ExpiredSignatureError:
            raise ExpiredToken() from None
        except jwt.PyJWTError as exc:
            raise InvalidToken(f"the buyer token is invalid: {exc}") from None
        sub = claims["sub"]
        if not isinstance(sub, str) or BUYER_ID.fullmatch(sub) is None:
            raise InvalidToken("the buyer token's sub is no valid buyer id")
        return sub, float(claims["exp"])


def bearer_token(authorization: str | None) -> str:
    """The token of an `Authorization: Bearer <token>` header, or InvalidToken."""
    scheme, _sep, token = (authorization or "").partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise InvalidToken("a buyer bearer token is required (Authorization: Bearer <JWT>)")
    return token


class TokenMinter:
    """Signs development buyer tokens (CLI, load tools, tests); refuses without
    ALLOW_DEV_SECRETS, so it never mints with a production key by accident."""

    def __init__(self, settings: Settings) -> None:
        if not settings.allow_dev_secrets:
            raise InsecureSecrets("minting buyer tokens is for development: set "
                                  "ALLOW_DEV_SECRETS=true")
        self._algorithm = settings.buyer_token_algorithm
        if self._algorithm == "HS256":
            self._key: Any = settings.buyer_token_secret.get_secret_value()
        elif settings.buyer_token_private_key_file:
            self._key = jwt.algorithms.get_default_algorithms()[
                self._algorithm].prepare_key(Path(settings.buyer_token_private_key_file)
                                             .read_text())
        else:
            raise InsecureSecrets(f"BUYER_TOKEN_ALGORITHM={self._algorithm} mints only with "
                                  "BUYER_TOKEN_PRIVATE_KEY_FILE")
        self._extra: dict[str, Any] = {}
        if settings.buyer_token_issuer:
            self._extra["iss"] = settings.buyer_token_issuer
        if settings.buyer_token_audience:
            self._extra["aud"] = settings.buyer_token_audience

    def token(self, buyer: str, ttl_seconds: float = DEFAULT_TTL_SECONDS,
              now: float | None = None) -> str:
        if BUYER_ID.fullmatch(buyer) is None:
            raise ValueError(f"{buyer!r} is no valid buyer id")
        issued = int(time.time() if now is None else now)
        return jwt.encode({"sub": buyer, "iat": issued, "exp": issued + int(ttl_seconds),
                           **self._extra}, self._key, algorithm=self._algorithm)

    def header(self, buyer: str, ttl_seconds: float = DEFAULT_TTL_SECONDS) -> dict[str, str]:
        """`{"Authorization": "Bearer <token>"}` for `buyer`."""
        return {"Authorization": f"Bearer {self.token(buyer, ttl_seconds)}"}
