"""`.env.example` documents only settings that exist (and the infrastructure ports)."""

from __future__ import annotations

from pathlib import Path

from hotdeal_core.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
INFRA_PORTS = {"HOTDEAL_PG_PORT", "HOTDEAL_REDIS_PORT", "HOTDEAL_KAFKA_PORT"}


def test_every_variable_in_env_example_is_a_setting_or_an_infra_port() -> None:
    keys = [line.split("=", 1)[0] for line in (ROOT / ".env.example").read_text().splitlines()
            if line and not line.startswith("#")]
    fields = {name.upper() for name in Settings.model_fields}
    assert keys and set(keys) <= fields | INFRA_PORTS, set(keys) - fields - INFRA_PORTS
    for required in ("DATABASE_URL", "REDIS_URL", "KAFKA_BOOTSTRAP_SERVERS",
                     "HOTDEAL_STOCK_REDIS", "PAYMENT_WEBHOOK_SECRET", "ADMIN_TOKEN",
                     "RESERVATION_TTL_SECONDS"):
        assert required in keys
