"""payment marks on orders, publish attempts on outbox rows

- orders.paid_at: when the first successful payment was accepted while the order was still
  PENDING and within its reservation (written by the webhook in the payment's transaction);
  the expiry sweeper never cancels an order that carries it.
- orders.payment_id: the payment that confirmed the order (written by the stock worker), so
  that a second, different successful payment is recognised and refunded.
- outbox.attempts / outbox.last_error: a row that keeps failing to publish is set aside after
  a bounded number of attempts instead of failing its batch forever.

Revision ID: 0003
Revises: 0002
"""
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
