"""initial_schema

Revision ID: 0001
Revises: 
Create Date: 2026-11-23 23:44:18.329184
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = '0001'
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('outbox',
    sa.Column('id', sa.BigInteger(), autoincrement=True, nullable=False),
    sa.Column('topic', sa.String(length=200), nullable=False),
    sa.Column('key', sa.String(length=200), nullable=False),
    sa.Column('event_type', sa.String(length=64), nullable=False),
    sa.Column('payload', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('claimed_until', sa.DateTime(timezone=True), nullable=True),
    sa.Column('published_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_outbox'))
    )
    op.create_index('ix_outbox_unpublished', 'outbox', ['id'], unique=False, postgresql_where=sa.text('published_at IS NULL'))
    op.create_table('payments',
    sa.Column('id', sa.BigInteger(), autoincrement=True, nullable=False),
    sa.Column('payment_id', sa.String(length=128), nullable=False),
    sa.Column('order_id', sa.UUID(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('amount', sa.BigInteger(), nullable=False),
    sa.Column('outcome', sa.String(length=32), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.CheckConstraint("status IN ('succeeded','failed')", name=op.f('ck_payments_status_valid')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_payments')),
    sa.UniqueConstraint('payment_id', name=op.f('uq_payments_payment_id'))
    )
    op.create_index('ix_payments_order', 'payments', ['order_id'], unique=False)
    op.create_table('processed_events',
    sa.Column('consumer', sa.String(length=64), nullable=False),
    sa.Column('event_id', sa.UUID(), nullable=False),
    sa.Column('processed_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.PrimaryKeyConstraint('consumer', 'event_id', name=op.f('pk_processed_events'))
    )
    op.create_table('products',
    sa.Column('id', sa.BigInteger(), autoincrement=True, nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('price', sa.BigInteger(), nullable=False),
    sa.Column('stock', sa.BigInteger(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.CheckConstraint('length(name) > 0', name=op.f('ck_products_name_not_empty')),
    sa.CheckConstraint('price >= 0', name=op.f('ck_products_price_non_negative')),
    sa.CheckConstraint('stock >= 0', name=op.f('ck_products_stock_non_negative')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_products'))
    )
    op.create_table('hot_deals',
    sa.Column('id', sa.BigInteger(), autoincrement=True, nullable=False),
    sa.Column('product_id', sa.BigInteger(), nullable=False),
    sa.Column('initial_stock', sa.Integer(), nullable=False),
    sa.Column('per_user_limit', sa.Integer(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('stock_backend', sa.String(length=8), nullable=False),
    sa.Column('remaining_stock', sa.Integer(), server_default=sa.text('0'), nullable=False),
    sa.Column('returned_stock', sa.Integer(), server_default=sa.text('0'), nullable=False),
    sa.Column('epoch', sa.Integer(), server_default=sa.text('1'), nullable=False),
    sa.Column('ends_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('ended_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('reconciled_at', sa.DateTime(timezone=True), nullable=True),
    sa.CheckConstraint("status IN ('SCHEDULED','ACTIVE','ENDED','RECONCILED')", name=op.f('ck_hot_deals_status_valid')),
    sa.CheckConstraint("stock_backend IN ('redis','db')", name=op.f('ck_hot_deals_stock_backend_valid')),
    sa.CheckConstraint('initial_stock > 0', name=op.f('ck_hot_deals_initial_stock_positive')),
    sa.CheckConstraint('per_user_limit > 0', name=op.f('ck_hot_deals_per_user_limit_positive')),
    sa.CheckConstraint('remaining_stock + returned_stock <= initial_stock', name=op.f('ck_hot_deals_stock_conserved')),
    sa.CheckConstraint('remaining_stock >= 0', name=op.f('ck_hot_deals_remaining_non_negative')),
    sa.CheckConstraint('returned_stock >= 0', name=op.f('ck_hot_deals_returned_non_negative')),
    sa.ForeignKeyConstraint(['product_id'], ['products.id'], name=op.f('fk_hot_deals_product_id_products')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_hot_deals'))
    )
    op.create_index('uq_hot_deals_live_per_product', 'hot_deals', ['product_id'], unique=True, postgresql_where=sa.text("status IN ('SCHEDULED','ACTIVE','ENDED')"))
    op.create_table('orders',
    sa.Column('id', sa.UUID(), nullable=False),
    sa.Column('product_id', sa.BigInteger(), nullable=False),
    sa.Column('hot_deal_id', sa.BigInteger(), nullable=True),
    sa.Column('user_id', sa.String(length=128), nullable=False),
    sa.Column('quantity', sa.Integer(), nullable=False),
    sa.Column('unit_price', sa.BigInteger(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('cancel_reason', sa.String(length=32), nullable=True),
    sa.Column('idempotency_key', sa.String(length=128), nullable=True),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.CheckConstraint("(status = 'CANCELLED') = (cancel_reason IS NOT NULL)", name=op.f('ck_orders_cancel_reason_iff_cancelled')),
    sa.CheckConstraint("status IN ('PENDING','CONFIRMED','CANCELLED')", name=op.f('ck_orders_status_valid')),
    sa.CheckConstraint('length(user_id) > 0', name=op.f('ck_orders_user_id_not_empty')),
    sa.CheckConstraint('quantity > 0', name=op.f('ck_orders_quantity_positive')),
    sa.CheckConstraint('unit_price >= 0', name=op.f('ck_orders_unit_price_non_negative')),
    sa.ForeignKeyConstraint(['hot_deal_id'], ['hot_deals.id'], name=op.f('fk_orders_hot_deal_id_hot_deals')),
    sa.ForeignKeyConstraint(['product_id'], ['products.id'], name=op.f('fk_orders_product_id_products')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_orders')),
    sa.UniqueConstraint('user_id', 'idempotency_key', name='uq_orders_user_idempotency_key')
    )
    op.create_index('ix_orders_deal_status', 'orders', ['hot_deal_id', 'status'], unique=False)
    op.create_index('ix_orders_pending_expiry', 'orders', ['expires_at'], unique=False, postgresql_where=sa.text("status = 'PENDING'"))
    op.create_table('reconciliations',
    sa.Column('id', sa.BigInteger(), autoincrement=True, nullable=False),
    sa.Column('hot_deal_id', sa.BigInteger(), nullable=False),
    sa.Column('initial_stock', sa.Integer(), nullable=False),
    sa.Column('redis_stock', sa.Integer(), nullable=False),
    sa.Column('orphans_released', sa.Integer(), nullable=False),
    sa.Column('cancelled_released', sa.Integer(), nullable=False),
    sa.Column('returned_stock', sa.Integer(), nullable=False),
    sa.Column('pending_units', sa.Integer(), nullable=False),
    sa.Column('confirmed_units', sa.Integer(), nullable=False),
    sa.Column('balanced', sa.Boolean(), nullable=False),
    sa.Column('details', sa.Text(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.ForeignKeyConstraint(['hot_deal_id'], ['hot_deals.id'], name=op.f('fk_reconciliations_hot_deal_id_hot_deals')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_reconciliations')),
    sa.UniqueConstraint('hot_deal_id', name=op.f('uq_reconciliations_hot_deal_id'))
    )


def downgrade() -> None:
    op.drop_table('reconciliations')
    op.drop_index('ix_orders_pending_expiry', table_name='orders', postgresql_where=sa.text("status = 'PENDING'"))
    op.drop_index('ix_orders_deal_status', table_name='orders')
    op.drop_table('orders')
    op.drop_index('uq_hot_deals_live_per_product', table_name='hot_deals', postgresql_where=sa.text("status IN ('SCHEDULED','ACTIVE','ENDED')"))
    op.drop_table('hot_deals')
    op.drop_table('products')
    op.drop_table('processed_events')
    op.drop_index('ix_payments_order', table_name='payments')
    op.drop_table('payments')
    op.drop_index('ix_outbox_unpublished', table_name='outbox', postgresql_where=sa.text('published_at IS NULL'))
    op.drop_table('outbox')
