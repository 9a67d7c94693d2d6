"""Secrets are never defaults or empty outside development, never printed; admin auth never
accepts an empty token (the processes' own start-up: tests/integration/test_processes.py)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
from pydantic import SecretStr

from hotdeal_core.errors import Unauthorized
from hotdeal_core.settings import DEV_ADMIN_TOKEN, InsecureSecrets, Settings, load_settings
from order_api.app import create_app
from order_api.routes import require_admin


def _settings(**values: object) -> Settings:
    return Settings(_env_file=None, **values)  # type: ignore[arg-type]


@pytest.mark.parametrize("field", ["admin_token", "payment_webhook_secret"])
@pytest.mark.parametrize("value", [None, "", "   "])
def test_the_api_refuses_default_or_empty_secrets_without_the_dev_switch(
        field: str, value: str | None) -> None:
    real = {"admin_token": "a-real-token", "payment_webhook_secret": "a-real-secret"}
    if value is None:
        del real[field]  # the development default
    else:
        real[field] = value
    settings = _settings(allow_dev_secrets=False, **real)
    with pytest.raises(InsecureSecrets, match=field.upper()):
        create_app(settings)


def test_an_empty_secret_is_refused_even_with_the_dev_switch() -> None:
    with pytest.raises(InsecureSecrets, match="ADMIN_TOKEN is empty"):
        _settings(allow_dev_secrets=True, admin_token="").require_real_secrets()


def test_real_secrets_start_and_never_print() -> None:
    s = _settings(allow_dev_secrets=False, admin_token="tok-123456",
                  payment_webhook_secret="sec-123456",
                  buyer_token_secret="buyer-secret-0123456789-0123456789")
    create_app(s)
    assert s.admin_token.get_secret_value() == "tok-123456"
    assert "tok-123456" not in repr(s) and "sec-123456" not in str(s.model_dump())


def test_the_dev_switch_allows_the_defaults() -> None:
    s = _settings(allow_dev_secrets=True)
    s.require_real_secrets()
    assert s.admin_token.get_secret_value() == DEV_ADMIN_TOKEN


def test_a_bad_setting_ends_the_process_with_a_clear_message(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)  # no .env
    monkeypatch.setenv("KAFKA_PARTITIONS", "0")
    with pytest.raises(SystemExit, match="refusing to start: kafka_partitions"):
        load_settings()


def _request(token: str) -> object:
    settings = SimpleNamespace(admin_token=SecretStr(token))
    return SimpleNamespace(app=SimpleNamespace(state=SimpleNamespace(settings=settings)))


@pytest.mark.parametrize(("configured", "header"), [
    ("", "Bearer "), ("", "Bearer"), ("", None), ("tok", "Bearer "), ("tok", "Bearer tok2"),
    ("tok", "Basic tok"), ("tok", "Bearer tök")])
async def test_admin_auth_refuses_empty_and_wrong_tokens(configured: str,
                                                         header: str | None) -> None:
    with pytest.raises(Unauthorized):
        await require_admin(_request(configured), header)  # type: ignore[arg-type]


async def test_admin_auth_accepts_the_token() -> None:
    await require_admin(_request("tok"), "Bearer tok")  # type: ignore[arg-type]


def test_no_fault_hook_does_nothing_and_a_named_one_is_loaded() -> None:
    from hotdeal_core.bootstrap.resources import load_hook
    from tests import faults

    assert load_hook(None)() is None
    assert load_hook("")() is None
    assert load_hook("tests.faults:kill_after_reserve") is faults.kill_after_reserve
