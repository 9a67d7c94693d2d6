"""the relay that holds an outbox row's claim

- outbox.claimed_by: the relay (a random id per relay) whose claim this is. A relay renews
  its claims while a send waits on Kafka, and re-checks rows handed over by a group commit
  before sending them, so that a row whose lease expired and was taken over by another relay
  is not published twice. NULL: born claimed by a group commit and not renewed since.

Revision ID: 0004
Revises: 0003
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0004'
down_revision: str | None = '0003'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column('outbox', sa.Column('claimed_by', sa.String(64), nullable=True))


def downgrade() -> None:
    op.drop_column('outbox', 'claimed_by')
