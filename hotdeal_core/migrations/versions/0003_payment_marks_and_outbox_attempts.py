"""payment marks on orders, publish attempts on outbox rows

orders.paid_at (paid in time: never expired), orders.payment_id (the confirming payment:
another is refunded), outbox.attempts / last_error (a failing row is set aside).

Revision ID: 0003
Revises: 0002"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0003'
down_revision: str | None = '0002'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column('orders', sa.Column('paid_at', sa.DateTime(timezone=True), nullable=True))
    op.add_column('orders', sa.Column('payment_id', sa.String(128), nullable=True))
    op.add_column('outbox', sa.Column('attempts', sa.Integer(), nullable=False,
                                      server_default=sa.text('0')))
    op.add_column('outbox', sa.Column('last_error', sa.Text(), nullable=True))


def downgrade() -> None:
    op.drop_column('outbox', 'last_error')
    op.drop_column('outbox', 'attempts')
    op.drop_column('orders', 'payment_id')
    op.drop_column('orders', 'paid_at')
