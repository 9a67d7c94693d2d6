"""Settings, read once at process start-up (never at import) from the environment / `.env`."""

from __future__ import annotations

import argparse
from typing import Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# The defaults of the two secrets: usable only with ALLOW_DEV_SECRETS=true.
DEV_WEBHOOK_SECRET = "dev-webhook-secret-change-me"
DEV_ADMIN_TOKEN = "dev-admin-token-change-me"
DEV_BUYER_TOKEN_SECRET = "dev-buyer-token-secret-change-me-0123456789"  # HS256: 32+ bytes

# Where `make infra-up` runs the services (the scripts' copy: scripts/lib/ports.sh; a unit
# test keeps the two equal). Below the kernel's ephemeral range (32768-60999), so no
# client's source port can hold one.
PG_PORT = 15432
REDIS_PORT = 16379
KAFKA_PORT = 19092
ORDER_API_PORT = 18000


def local_database_url(database: str = "hotdeal", scheme: str = "postgresql+asyncpg",
                       port: int = PG_PORT) -> str:
    """A database of the local Postgres, as the development user."""
    return f"{scheme}://hotdeal:hotdeal@127.0.0.1:{port}/{database}"


def local_redis_url(db: int = 0, port: int = REDIS_PORT) -> str:
    """A database of the local Redis."""
    return f"redis://127.0.0.1:{port}/{db}"


# Kafka deletes a topic's messages a whole segment at a time, once the segment's newest
# message is older than retention.ms: a message can stay up to one segment's span longer.
# The app creates its topics with segments of this span (hotdeal_core/messaging/admin.py).
TOPIC_SEGMENT_HOURS = 1.0
# Kafka's retention check runs every 5 minutes (log.retention.check.interval.ms); an hour
# covers it and clocks that disagree a little.
RETENTION_MARGIN_HOURS = 1.0


def longest_redelivery_hours(topic_retention_hours: float) -> float:
    """How long after it was written a message can still be delivered (then it is gone)."""
    return topic_retention_hours + TOPIC_SEGMENT_HOURS + RETENTION_MARGIN_HOURS


class InsecureSecrets(ValueError):
    """The order API was started with a default or empty secret and no development switch."""


class Settings(BaseSettings):
    """Every knob of the three processes and the CLI. Defaults match `make infra-up`."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    database_url: str = local_database_url()
    redis_url: str = local_redis_url()
    kafka_bootstrap_servers: str = f"127.0.0.1:{KAFKA_PORT}"
    kafka_topic_prefix: str = ""
    kafka_partitions: int = Field(default=6, ge=1)
    # Replicas of every topic this app creates; -1: the brokers' default.replication.factor
    # (1 on `make infra-up`, 3 on the cluster of scripts/cluster/kafka.sh).
    kafka_replication_factor: int = Field(default=-1, ge=-1)
    # How long every topic this app creates keeps its messages (its retention.ms; segments
    # roll hourly, see hotdeal_core/messaging/admin.py): the longest a message can be
    # redelivered is this plus TOPIC_SEGMENT_HOURS.
    kafka_topic_retention_hours: float = Field(default=24.0, gt=0)
    hotdeal_stock_redis: bool = True
    payment_webhook_secret: SecretStr = SecretStr(DEV_WEBHOOK_SECRET)
    admin_token: SecretStr = SecretStr(DEV_ADMIN_TOKEN)
    # Development switch: allow the default secrets above (the make targets and tests set it).
    allow_dev_secrets: bool = False
    # Buyer identity (hotdeal_core/identity.py): buyer routes need `Authorization: Bearer
    # <JWT>` from the shop's identity provider; the buyer id is its `sub`. HS256 verifies
    # with BUYER_TOKEN_SECRET; EdDSA / ES256 with BUYER_TOKEN_PUBLIC_KEY_FILE (a PEM public
    # key, or a JWKS file whose keys are picked by the token's `kid`).
    buyer_token_algorithm: Literal["HS256", "EdDSA", "ES256"] = "HS256"
    buyer_token_secret: SecretStr = SecretStr(DEV_BUYER_TOKEN_SECRET)
    buyer_token_public_key_file: str | None = None
    # Development and load tools only (`hotdeal buyer token`): the private key (PEM) that
    # signs EdDSA / ES256 tokens; HS256 tokens are signed with BUYER_TOKEN_SECRET.
    buyer_token_private_key_file: str | None = None
    buyer_token_issuer: str | None = None  # checked when set
    buyer_token_audience: str | None = None  # checked when set
    buyer_token_leeway_seconds: int = Field(default=5, ge=0, le=300)
    # Verified tokens kept per process (the signature is checked once per token; `exp` on
    # every request); 0 disables.
    buyer_token_cache_size: int = Field(default=100_000, ge=0)
    reservation_ttl_seconds: int = Field(default=600, ge=1)
    # A deal's opening window when its start does not say (Redis-stock deals): the orders of
    # its first seconds enter a random draw, one entry per buyer (docs/architecture.md).
    # 3 s: people click 0.2-3 s after a deal opens; a window that covers them all makes a
    # script's head start worthless (docs/scenarios/deal-opening-fairness.md).
    deal_opening_window_seconds: float = Field(default=3.0, ge=0, le=60)
    # Rate limits of POST /orders (order_api/limits.py), per API process: orders a second
    # and how many at once; over them a request is answered 429 + Retry-After before any
    # stock work. 0 disables a limit. Per buyer: a person clicks a few times a second at
    # most. Per client address: off, as one address can be a whole office, a mobile
    # carrier's NAT, or (without TRUSTED_CLIENT_IP_HEADER behind a proxy) every buyer.
    order_rate_per_buyer: float = Field(default=2.0, ge=0)
    order_burst_per_buyer: int = Field(default=5, ge=1)
    order_rate_per_address: float = Field(default=0.0, ge=0)
    order_burst_per_address: int = Field(default=100, ge=1)
    # Unset: a client's address is the socket peer's. Set (e.g. X-Forwarded-For) only when
    # every request comes through proxies that append to it: the client's address is the
    # entry TRUSTED_PROXY_HOPS from its right (1: the right-most, what the nearest proxy saw).
    trusted_client_ip_header: str | None = None
    trusted_proxy_hops: int = Field(default=1, ge=1)

    order_api_host: str = "127.0.0.1"
    order_api_port: int = ORDER_API_PORT
    order_api_workers: int = Field(default=1, ge=1)
    # uvicorn (measured faster here: benchmarks/http.py) or granian (an optional package).
    order_api_server: Literal["uvicorn", "granian"] = "uvicorn"
    # The API's event loop. asyncio, not uvloop: under a flood of keep-alive requests uvloop
    # stops accepting new connections (measured: 683 in the listen queue for 4 s while 400
    # connections were served; the buyers who open a connection at a deal's opening missed
    # its window), asyncio keeps accepting them; the throughput cost is within this
    # machine's noise (docs/scenarios/deal-opening-fairness.md).
    order_api_loop: Literal["asyncio", "uvloop"] = "asyncio"
    # Connections the kernel holds for the API's listening socket before it accepts them (a
    # deal's opening: thousands at once); the kernel caps it at net.core.somaxconn.
    order_api_backlog: int = Field(default=2048, ge=1, le=65535)

    db_pool_size: int = Field(default=20, ge=1)
    redis_max_connections: int = Field(default=64, ge=1)
    # A Redis Cluster (scripts/cluster/redis.sh): REDIS_URL names any one node (db 0 only);
    # the client discovers the others (hotdeal_core/stock/client.py).
    redis_cluster: bool = False
    # A reservation is answered only once a replica holds it (WAIT 1 <ms> on the connection
    # that reserved); on timeout it is given back and the buyer gets 503 + Retry-After.
    # Unset: 100 ms with REDIS_CLUSTER, else 100 ms whenever the primary has replicas
    # (hotdeal_core/stock/client.py `replica_acks`). Set: always that; 0 turns it off.
    redis_replica_ack_timeout_ms: int | None = Field(default=None, ge=0)
    # How long a reservation that never reached Redis (its node refused the connection, its
    # slot is moving to a promoted replica) is sent again before the buyer gets 503: a
    # Cluster failover takes 3-5 s here (docs/scaling.md "Losing a Redis master"). 0: never.
    redis_failover_wait_seconds: float = Field(default=3.5, ge=0)
    db_max_overflow: int = Field(default=20, ge=0)
    # Seconds a request waits for a database connection before answering 503.
    db_pool_timeout: float = Field(default=10.0, gt=0)
    # Per-process memo of sold-out products (hotdeal_core/stock/sold_out.py); 0 disables.
    sold_out_cache_ms: int = Field(default=100, ge=0)
    outbox_poll_interval_ms: int = Field(default=50, ge=5)
    outbox_batch_size: int = Field(default=500, ge=1)
    # The most orders (payments) one group commit writes; a batch is whatever arrived while
    # the previous one was written, up to this (hotdeal_core/batching.py).
    write_batch_max: int = Field(default=1000, ge=1)
    # The stock worker's batches: at most this many records, and how long a poll waits for
    # more once it has some (larger batches: fewer commits; see stock_worker/app.py).
    settle_batch_max_records: int = Field(default=500, ge=1)
    settle_batch_timeout_ms: int = Field(default=20, ge=1)
    # Kafka consumer-group membership of the stock worker and the reconciler
    # (hotdeal_core/messaging/membership.py, docs/scaling.md). CONSUMER_INSTANCE_ID set:
    # static membership (KIP-345), a process restarted under the same id gets its partitions
    # back at once, without a rebalance; it must be unique per process of a role (two live
    # processes under one id fence each other). Unset: dynamic membership.
    consumer_instance_id: str | None = Field(default=None, pattern=r"^[A-Za-z0-9._-]{1,200}$")
    # A member silent this long leaves the group and its partitions go to the others (the
    # brokers allow 6-1800 s by default); heartbeats every third of it.
    kafka_session_timeout_ms: int = Field(default=10_000, ge=1000, le=1_800_000)
    sweep_interval_seconds: float = Field(default=1.0, gt=0)
    sweep_batch_size: int = Field(default=200, ge=1)
    orphan_grace_seconds: float = Field(default=30.0, gt=0)
    webhook_tolerance_seconds: int = Field(default=300, ge=1)
    # "module:function" called (no arguments) right after each reservation of the order path:
    # the e2e tests inject a crash there (tests/faults.py). Never set in production.
    fault_hook: str | None = None
    reconcile_interval_seconds: float = Field(default=1.0, gt=0)
    # Bounded tables (hotdeal_core/usecases/retention.py, a reconciler duty): published
    # outbox rows older than OUTBOX_RETENTION_HOURS, and processed-event records older than
    # PROCESSED_EVENTS_RETENTION_HOURS, are deleted RETENTION_BATCH_ROWS at a time. A record
    # must outlive any redelivery of its event, so it must be kept at least as long as a
    # message can stay in its topic (checked below). Orders and payments are kept.
    outbox_retention_hours: float = Field(default=24.0, gt=0)
    processed_events_retention_hours: float = Field(default=48.0, gt=0)
    retention_interval_seconds: float = Field(default=60.0, gt=0)
    retention_batch_rows: int = Field(default=5000, ge=1)
    # A consumed message whose handler keeps failing (not a dependency outage) is tried this
    # many times, with backoff, then dead-lettered with the reason.
    handler_max_attempts: int = Field(default=5, ge=1)
    # An outbox row that keeps failing to publish is set aside after this many attempts.
    outbox_max_attempts: int = Field(default=10, ge=1)
    # Logs of all three processes (hotdeal_core/observability/logs.py): text or JSON lines.
    log_format: Literal["text", "json"] = "text"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"
    # One log line per order API request (off: at flash-sale rates it costs more than an order).
    log_requests: bool = False
    # The consumers' HTTP port: GET /metrics (Prometheus), /healthz, /readyz; 0: a free port
    # the system chooses (logged). The order API serves these on its own port.
    metrics_host: str = "127.0.0.1"
    metrics_port: int = Field(default=0, ge=0, le=65535)
    # Traces of the order path (OpenTelemetry; hotdeal_core/observability/tracing.py): off by
    # default. On: a trace is kept for this share of the requests (a kept one is kept
    # through the outbox, Kafka and the stock worker), sent over OTLP/HTTP to
    # OTEL_EXPORTER_OTLP_ENDPOINT (unset: the exporter's default, http://localhost:4318).
    tracing_enabled: bool = False
    tracing_sample_ratio: float = Field(default=1.0, ge=0, le=1)
    otel_exporter_otlp_endpoint: str | None = None

    @field_validator("kafka_replication_factor")
    @classmethod
    def _replicas_or_broker_default(cls, value: int) -> int:
        if value == 0:
            raise ValueError("must be -1 (the brokers' default) or at least 1")
        return value

    @model_validator(mode="after")
    def _records_outlive_redeliveries(self) -> Settings:
        longest = longest_redelivery_hours(self.kafka_topic_retention_hours)
        if self.processed_events_retention_hours < longest:
            raise ValueError(
                f"PROCESSED_EVENTS_RETENTION_HOURS={self.processed_events_retention_hours:g} "
                f"is shorter than a message can stay in its topic ({longest:g} h: "
                f"KAFKA_TOPIC_RETENTION_HOURS={self.kafka_topic_retention_hours:g} + "
                f"{TOPIC_SEGMENT_HOURS:g} h segment + {RETENTION_MARGIN_HOURS:g} h margin); a "
                "redelivered event would be applied again")
        return self

    def require_real_secrets(self) -> None:
        """Raise InsecureSecrets if a secret is empty, or the development default without
        ALLOW_DEV_SECRETS (called by the order API, the one process that uses them)."""
        secrets = [("PAYMENT_WEBHOOK_SECRET", self.payment_webhook_secret, DEV_WEBHOOK_SECRET),
                   ("ADMIN_TOKEN", self.admin_token, DEV_ADMIN_TOKEN)]
        if self.buyer_token_algorithm == "HS256":
            secrets.append(("BUYER_TOKEN_SECRET", self.buyer_token_secret,
                            DEV_BUYER_TOKEN_SECRET))
        elif not self.buyer_token_public_key_file:
            raise InsecureSecrets(f"BUYER_TOKEN_ALGORITHM={self.buyer_token_algorithm} needs "
                                  "BUYER_TOKEN_PUBLIC_KEY_FILE (a PEM public key or a JWKS)")
        for name, value, default in secrets:
            secret = value.get_secret_value()
            if not secret.strip():
                raise InsecureSecrets(f"{name} is empty; set a real secret")
            if secret == default and not self.allow_dev_secrets:
                raise InsecureSecrets(f"{name} is the development default; set a real "
                                      "secret, or ALLOW_DEV_SECRETS=true for local development")


def parse_command_line(prog: str, summary: str, argv: list[str] | None = None) -> None:
    """The processes take no arguments, only settings: `--help` says so and lists them."""
    lines = []
    for name, info in Settings.model_fields.items():
        default = "(secret)" if "secret" in name or "token" in name else info.default
        lines.append(f"  {name.upper():28} {default}")
    parser = argparse.ArgumentParser(
        prog=prog, description=summary, formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="settings (environment variables or .env, read once at start-up; defaults):\n"
               + "\n".join(lines))
    parser.parse_args(argv)


def load_settings() -> Settings:
    """The settings of a process at start-up; a bad setting ends it with a clear message
    instead of a traceback."""
    try:
        return Settings()
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'settings'}: {e['msg']}"
                             for e in exc.errors())
        raise SystemExit(f"hotdeal: refusing to start: {problems}") from None
