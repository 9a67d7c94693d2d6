"""Storage model: SQLAlchemy Core tables. The constraints protect the invariants even
against a buggy writer: stock never negative, quantities positive, one live deal per
product, idempotency keys unique per user, payments unique by provider id and status."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)


def _ts(name: str, nullable: bool = False) -> Column[object]:
    return Column(name, DateTime(timezone=True), nullable=nullable,
                  server_default=None if nullable else func.now())


products = Table(
    "products", metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("name", String(200), nullable=False),
    Column("price", BigInteger, nullable=False),
    Column("stock", BigInteger, nullable=False),
    _ts("created_at"), _ts("updated_at"),
    CheckConstraint("price >= 0", name="price_non_negative"),
    CheckConstraint("stock >= 0", name="stock_non_negative"),
    CheckConstraint("length(name) > 0", name="name_not_empty"),
)

hot_deals = Table(
    "hot_deals", metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("product_id", BigInteger, ForeignKey("products.id"), nullable=False),
    Column("initial_stock", Integer, nullable=False),
    Column("per_user_limit", Integer, nullable=False),
    Column("status", String(16), nullable=False),
    Column("stock_backend", String(8), nullable=False),
    # Live stock of a deal whose backend is "db" (the old design's hot row).
    Column("remaining_stock", Integer, nullable=False, server_default=text("0")),
    # Units given back to the product's stock: the flush, then cancellations after it.
    Column("returned_stock", Integer, nullable=False, server_default=text("0")),
    # Fencing token: bumped by every rebuild of the deal's Redis state.
    Column("epoch", Integer, nullable=False, server_default=text("1")),
    Column("ends_at", DateTime(timezone=True), nullable=True),
    _ts("created_at"), _ts("updated_at"),
    _ts("started_at", nullable=True), _ts("ended_at", nullable=True),
    _ts("reconciled_at", nullable=True),
    CheckConstraint("initial_stock > 0", name="initial_stock_positive"),
    CheckConstraint("per_user_limit > 0", name="per_user_limit_positive"),
    CheckConstraint("remaining_stock >= 0", name="remaining_non_negative"),
    CheckConstraint("returned_stock >= 0", name="returned_non_negative"),
    CheckConstraint("remaining_stock + returned_stock <= initial_stock", name="stock_conserved"),
    CheckConstraint("status IN ('SCHEDULED','ACTIVE','ENDED','RECONCILED')", name="status_valid"),
    CheckConstraint("stock_backend IN ('redis','db')", name="stock_backend_valid"),
)
Index("uq_hot_deals_live_per_product", hot_deals.c.product_id, unique=True,
      postgresql_where=text("status IN ('SCHEDULED','ACTIVE','ENDED')"))

orders = Table(
    "orders", metadata,
    Column("id", UUID(as_uuid=True), primary_key=True),
    # No foreign keys to products / hot_deals on purpose: a foreign-key check locks the
    # parent row (FOR KEY SHARE), and in a flash sale every order has the same parent, so
    # every buyer would queue on that one tuple. Orders are only written by the use cases,
    # after the product and its deal are known (see hotdeal_core/db/fence.py).
    Column("product_id", BigInteger, nullable=False),
    Column("hot_deal_id", BigInteger, nullable=True),
    Column("user_id", String(128), nullable=False),
    Column("quantity", Integer, nullable=False),
    Column("unit_price", BigInteger, nullable=False),
    Column("status", String(16), nullable=False),
    Column("cancel_reason", String(32), nullable=True),
    Column("idempotency_key", String(128), nullable=True),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    # Set by the webhook when a successful payment is accepted in time (the sweeper skips it).
    Column("paid_at", DateTime(timezone=True), nullable=True),
    # The payment that confirmed the order (set by the stock worker).
    Column("payment_id", String(128), nullable=True),
    _ts("created_at"), _ts("updated_at"),
    CheckConstraint("quantity > 0", name="quantity_positive"),
    CheckConstraint("unit_price >= 0", name="unit_price_non_negative"),
    CheckConstraint("length(user_id) > 0", name="user_id_not_empty"),
    CheckConstraint("status IN ('PENDING','CONFIRMED','CANCELLED')", name="status_valid"),
    CheckConstraint("(status = 'CANCELLED') = (cancel_reason IS NOT NULL)",
                    name="cancel_reason_iff_cancelled"),
    UniqueConstraint("user_id", "idempotency_key", name="uq_orders_user_idempotency_key"),
)
Index("ix_orders_deal_status", orders.c.hot_deal_id, orders.c.status)
Index("ix_orders_product", orders.c.product_id)
Index("ix_orders_pending_expiry", orders.c.expires_at,
      postgresql_where=text("status = 'PENDING'"))

payments = Table(
    "payments", metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("payment_id", String(128), nullable=False),
    Column("order_id", UUID(as_uuid=True), nullable=False),
    Column("status", String(16), nullable=False),
    Column("amount", BigInteger, nullable=False),
    # accepted | amount_mismatch | order_not_found
    Column("outcome", String(32), nullable=False),
    _ts("created_at"),
    CheckConstraint("status IN ('succeeded','failed')", name="status_valid"),
    # One fact per (payment id, status): a provider keeps one id per payment intent, so the
    # same id reported failed and then succeeded is two facts; the same status again a replay.
    UniqueConstraint("payment_id", "status", name="uq_payments_payment_id_status"),
)
Index("ix_payments_order", payments.c.order_id)

outbox = Table(
    "outbox", metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("topic", String(200), nullable=False),
    Column("key", String(200), nullable=False),
    Column("event_type", String(64), nullable=False),
    Column("payload", JSONB, nullable=False),
    _ts("created_at"),
    Column("claimed_until", DateTime(timezone=True), nullable=True),
    # The relay holding the claim (NULL: born claimed by a group commit, not renewed yet).
    Column("claimed_by", String(64), nullable=True),
    Column("published_at", DateTime(timezone=True), nullable=True),
    # Failed publish attempts; a row past the relay's limit is set aside (see outbox.py).
    Column("attempts", Integer, nullable=False, server_default=text("0")),
    Column("last_error", Text, nullable=True),
    # The W3C trace context the relay puts into the Kafka record's headers (NULL: none;
    # hotdeal_core/observability/tracing.py).
    Column("headers", JSONB, nullable=True),
)
Index("ix_outbox_unpublished", outbox.c.id, postgresql_where=text("published_at IS NULL"))
# The retention duty's (hotdeal_core/usecases/retention.py): the oldest published rows.
Index("ix_outbox_published_at", outbox.c.published_at,
      postgresql_where=text("published_at IS NOT NULL"))

processed_events = Table(
    "processed_events", metadata,
    Column("consumer", String(64), primary_key=True),
    Column("event_id", UUID(as_uuid=True), primary_key=True),
    _ts("processed_at"),
)
# The retention duty's: the oldest records (kept past any redelivery, see settings.py).
Index("ix_processed_events_processed_at", processed_events.c.processed_at)

reconciliations = Table(
    "reconciliations", metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("hot_deal_id", BigInteger, ForeignKey("hot_deals.id"), nullable=False, unique=True),
    Column("initial_stock", Integer, nullable=False),
    Column("redis_stock", Integer, nullable=False),
    Column("orphans_released", Integer, nullable=False),
    Column("cancelled_released", Integer, nullable=False),
    Column("returned_stock", Integer, nullable=False),
    Column("pending_units", Integer, nullable=False),
    Column("confirmed_units", Integer, nullable=False),
    Column("balanced", Boolean, nullable=False),
    Column("details", Text, nullable=True),
    _ts("created_at"),
)
