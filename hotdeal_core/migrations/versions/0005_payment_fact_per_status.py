"""a payment is one fact per (payment id, status)

Providers keep one payment id per payment intent: a declined attempt and the successful retry
arrive with the same id and another status. Unique by payment id alone, the success was
taken for a replay of the failure and the charge was lost.

Revision ID: 0005
Revises: 0004
"""
from collections.abc import Sequence

from alembic import op

revision: str = '0005'
down_revision: str | None = '0004'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.drop_constraint('uq_payments_payment_id', 'payments', type_='unique')
    op.create_unique_constraint('uq_payments_payment_id_status', 'payments',
                                ['payment_id', 'status'])


def downgrade() -> None:
    op.drop_constraint('uq_payments_payment_id_status', 'payments', type_='unique')
    op.create_unique_constraint('uq_payments_payment_id', 'payments', ['payment_id'])
