"""`hotdeal buyer token` (hotdeal_cli/buyer.py): one token a line, in order, each verifying
as its buyer; refused without ALLOW_DEV_SECRETS. No database involved."""

from __future__ import annotations

import json

import jwt
from typer.testing import CliRunner

from hotdeal_cli.main import app
from hotdeal_core.identity import BuyerTokens
from hotdeal_core.settings import Settings
from tests.random_refs import random_user

runner = CliRunner()


def test_each_buyer_gets_a_verifying_token_in_the_order_given() -> None:
    buyers = [random_user() for _ in range(3)]
    result = runner.invoke(app, ["buyer", "token", *buyers[:2], "--stdin", "--ttl", "90"],
                           input=f"\n{buyers[2]}\n\n")
    assert result.exit_code == 0, result.output
    tokens = result.stdout.splitlines()
    verifier = BuyerTokens(Settings(_env_file=None))
    assert [verifier.buyer(t) for t in tokens] == buyers
    claims = jwt.decode(tokens[0], options={"verify_signature": False})
    assert claims["exp"] - claims["iat"] == 90


def test_json_output_pairs_each_buyer_with_its_token() -> None:
    buyer = random_user()
    result = runner.invoke(app, ["buyer", "token", buyer, "--json"])
    assert result.exit_code == 0, result.output
    line = json.loads(result.stdout)
    assert line["user_id"] == buyer
    assert BuyerTokens(Settings(_env_file=None)).buyer(line["token"]) == buyer


def test_minting_is_refused_without_allow_dev_secrets() -> None:
    result = runner.invoke(app, ["buyer", "token", random_user()],
                           env={"ALLOW_DEV_SECRETS": "false"})
    assert result.exit_code == 2
    assert "dev_secrets_required" in result.output and "ALLOW_DEV_SECRETS" in result.output
    assert "eyJ" not in result.stdout  # no token printed


def test_an_invalid_buyer_id_or_none_at_all_is_a_usage_error() -> None:
    for args in (["a b"], []):
        result = runner.invoke(app, ["buyer", "token", *args])
        assert result.exit_code == 2, result.output
        assert "validation_error" in result.output
        assert "eyJ" not in result.stdout
