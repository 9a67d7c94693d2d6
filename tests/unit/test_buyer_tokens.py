"""Buyer tokens (hotdeal_core/identity.py): what verifies, what is refused and why, the
asymmetric keys (EdDSA from a PEM file, ES256 from a JWKS), and the per-process cache."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from hotdeal_core.identity import BuyerTokens, ExpiredToken, InvalidToken, TokenMinter
from hotdeal_core.settings import Settings
from tests.buyers import buyer_token
from tests.random_refs import random_user

FORGING_KEY = "not-the-shops-key-0123456789-0123456789"


def _settings(**values: Any) -> Settings:
    return Settings(_env_file=None, allow_dev_secrets=True, **values)


def forged(buyer: str) -> str:
    """A well-formed HS256 token signed with a key that is not the shop's."""
    return jwt.encode({"sub": buyer, "exp": int(time.time()) + 600}, FORGING_KEY,
                      algorithm="HS256")


def unsigned(buyer: str) -> str:
    """An `alg: none` token: no signature at all."""
    return jwt.encode({"sub": buyer, "exp": int(time.time()) + 600}, "", algorithm="none")


def expired(buyer: str) -> str:
    """A genuine token whose `exp` passed well beyond the leeway."""
    return TokenMinter(_settings()).token(buyer, ttl_seconds=60, now=time.time() - 3600)


def test_a_minted_token_names_its_buyer() -> None:
    buyer = random_user()
    assert BuyerTokens(_settings()).buyer(buyer_token(buyer)) == buyer


@pytest.mark.parametrize(("make", "refusal", "code"), [
    (forged, InvalidToken, "invalid_token"),
    (unsigned, InvalidToken, "invalid_token"),
    (expired, ExpiredToken, "token_expired"),
    (lambda buyer: "not.a.jwt", InvalidToken, "invalid_token"),
], ids=["forged", "alg-none", "expired", "malformed"])
def test_a_token_that_is_not_the_shops_or_is_expired_is_refused(
        make: Any, refusal: type[Exception], code: str) -> None:
    with pytest.raises(refusal) as caught:
        BuyerTokens(_settings()).buyer(make(random_user()))
    assert getattr(caught.value, "code", None) == code


def _write_pem_pair(tmp_path: Path, private: Any) -> tuple[Path, Path]:
    private_file, public_file = tmp_path / "private.pem", tmp_path / "public.pem"
    private_file.write_bytes(private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    public_file.write_bytes(private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    return private_file, public_file


def test_eddsa_tokens_verify_with_a_pem_public_key_file(tmp_path: Path) -> None:
    private_file, public_file = _write_pem_pair(tmp_path, ed25519.Ed25519PrivateKey.generate())
    settings = _settings(buyer_token_algorithm="EdDSA",
                         buyer_token_public_key_file=str(public_file),
                         buyer_token_private_key_file=str(private_file))
    buyer = random_user()
    tokens = BuyerTokens(settings)
    assert tokens.buyer(TokenMinter(settings).token(buyer)) == buyer
    with pytest.raises(InvalidToken):  # an HS256 token is not accepted by an EdDSA verifier
        tokens.buyer(buyer_token(buyer))


def test_es256_tokens_verify_with_the_jwks_key_their_kid_names(tmp_path: Path) -> None:
    private = ec.generate_private_key(ec.SECP256R1())
    other = ec.generate_private_key(ec.SECP256R1())
    jwks = {"keys": [
        {**json.loads(jwt.algorithms.ECAlgorithm.to_jwk(k.public_key())), "kid": kid,
         "alg": "ES256", "use": "sig"} for kid, k in (("k-1", private), ("k-2", other))]}
    (tmp_path / "jwks.json").write_text(json.dumps(jwks))
    settings = _settings(buyer_token_algorithm="ES256",
                         buyer_token_public_key_file=str(tmp_path / "jwks.json"))
    tokens, buyer = BuyerTokens(settings), random_user()
    claims = {"sub": buyer, "exp": int(time.time()) + 600}
    assert tokens.buyer(jwt.encode(claims, private, algorithm="ES256",
                                   headers={"kid": "k-1"})) == buyer
    with pytest.raises(InvalidToken):  # signed by k-1's key but naming k-2
        tokens.buyer(jwt.encode(claims, private, algorithm="ES256", headers={"kid": "k-2"}))
    with pytest.raises(InvalidToken):  # a kid the JWKS does not have
        tokens.buyer(jwt.encode(claims, private, algorithm="ES256", headers={"kid": "k-9"}))


def test_a_cached_token_is_not_verified_again(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    decode = jwt.decode

    def counting(token: str, *args: Any, **kwargs: Any) -> Any:
        calls.append(token)
        return decode(token, *args, **kwargs)
    monkeypatch.setattr(jwt, "decode", counting)
    tokens, buyer = BuyerTokens(_settings()), random_user()
    token = buyer_token(buyer)
    assert [tokens.buyer(token) for _ in range(3)] == [buyer] * 3
    assert calls == [token]  # one signature check for three requests


def test_a_cached_token_is_refused_once_it_expires(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = _settings(buyer_token_leeway_seconds=0)
    tokens, buyer = BuyerTokens(settings), random_user()
    token = TokenMinter(settings).token(buyer, ttl_seconds=60)
    assert tokens.buyer(token) == buyer  # verified and cached
    later = time.time() + 120
    monkeypatch.setattr(time, "time", lambda: later)
    with pytest.raises(ExpiredToken):
        tokens.buyer(token)


def test_without_a_cache_every_use_verifies(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    decode = jwt.decode

    def counting(token: str, *args: Any, **kwargs: Any) -> Any:
        calls.append(token)
        return decode(token, *args, **kwargs)
    monkeypatch.setattr(jwt, "decode", counting)
    tokens = BuyerTokens(_settings(buyer_token_cache_size=0))
    token = buyer_token(random_user())
    tokens.buyer(token)
    tokens.buyer(token)
    assert len(calls) == 2
