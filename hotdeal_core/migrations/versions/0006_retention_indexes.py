"""the indexes the retention duty deletes by

Built CONCURRENTLY: on large tables a plain CREATE INDEX would block every order's writes.

Revision ID: 0006
Revises: 0005"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0006'
down_revision: str | None = '0005'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.get_context().autocommit_block():
        op.create_index('ix_outbox_published_at', 'outbox', ['published_at'],
                        postgresql_where=sa.text('published_at IS NOT NULL'),
                        postgresql_concurrently=True, if_not_exists=True)
        op.create_index('ix_processed_events_processed_at', 'processed_events',
                        ['processed_at'], postgresql_concurrently=True, if_not_exists=True)


def downgrade() -> None:
    with op.get_context().autocommit_block():
        op.drop_index('ix_processed_events_processed_at', 'processed_events',
                      postgresql_concurrently=True, if_exists=True)
        op.drop_index('ix_outbox_published_at', 'outbox', postgresql_concurrently=True,
                      if_exists=True)
