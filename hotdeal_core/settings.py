"""Settings, read once at process start-up (never at import) from the environment / `.env`."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Every knob of the three processes and the CLI. Defaults match `make infra-up`."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    database_url: str = "postgresql+asyncpg://hotdeal:hotdeal@127.0.0.1:55432/hotdeal"
    redis_url: str = "redis://127.0.0.1:56379/0"
    kafka_bootstrap_servers: str = "127.0.0.1:59092"
    kafka_topic_prefix: str = ""
    kafka_partitions: int = Field(default=6, ge=1)
    hotdeal_stock_redis: bool = True
    payment_webhook_secret: str = "dev-webhook-secret-change-me"
    admin_token: str = "dev-admin-token-change-me"
    reservation_ttl_seconds: int = Field(default=600, ge=1)

    order_api_host: str = "127.0.0.1"
    order_api_port: int = 58000
    order_api_workers: int = Field(default=1, ge=1)

    db_pool_size: int = Field(default=20, ge=1)
    redis_max_connections: int = Field(default=64, ge=1)
    db_max_overflow: int = Field(default=20, ge=0)
    # Seconds a request waits for a database connection before answering 503.
    db_pool_timeout: float = Field(default=10.0, gt=0)
    # Per-process memo of sold-out products (hotdeal_core/stock/sold_out.py); 0 disables.
    sold_out_cache_ms: int = Field(default=100, ge=0)
    outbox_poll_interval_ms: int = Field(default=50, ge=5)
    outbox_batch_size: int = Field(default=500, ge=1)
    sweep_interval_seconds: float = Field(default=1.0, gt=0)
    sweep_batch_size: int = Field(default=200, ge=1)
    orphan_grace_seconds: float = Field(default=30.0, gt=0)
    webhook_tolerance_seconds: int = Field(default=300, ge=1)
    fault_kill_after_reserve: bool = False
    # A consumer process writes this file once it is running (process supervisors wait on it).
    ready_file: str | None = None
    reconcile_interval_seconds: float = Field(default=1.0, gt=0)


def load_settings() -> Settings:
    return Settings()
