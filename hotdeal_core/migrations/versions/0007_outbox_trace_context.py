"""the trace context an outbox row carries into its Kafka record

- outbox.headers: the W3C trace context (`traceparent`, `tracestate`) of the request that
  wrote the row, put by the relay into the Kafka record's headers
  (hotdeal_core/observability/tracing.py). NULL when tracing is off.

Revision ID: 0007
Revises: 0006
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision: str = '0007'
down_revision: str | None = '0006'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Nullable and without a default: a catalog-only change, no rewrite of the table.
    op.add_column('outbox', sa.Column('headers', JSONB, nullable=True))


def downgrade() -> None:
    op.drop_column('outbox', 'headers')
