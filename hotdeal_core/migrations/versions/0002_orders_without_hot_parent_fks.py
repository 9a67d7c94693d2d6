"""orders without foreign keys to their (hot) parents

A foreign-key check locks the parent row FOR KEY SHARE; in a flash sale every order has the
same product and deal, so every buyer queued on that one tuple (Lock:tuple waits, measured).
The deal fence is an advisory lock instead (hotdeal_core/db/fence.py).

Revision ID: 0002
Revises: 0001
"""
from collections.abc import Sequence

from alembic import op

revision: str = '0002'
down_revision: str | None = '0001'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.drop_constraint('fk_orders_hot_deal_id_hot_deals', 'orders', type_='foreignkey')
    op.drop_constraint('fk_orders_product_id_products', 'orders', type_='foreignkey')
    op.create_index('ix_orders_product', 'orders', ['product_id'])


def downgrade() -> None:
    op.drop_index('ix_orders_product', table_name='orders')
    op.create_foreign_key('fk_orders_product_id_products', 'orders', 'products',
                          ['product_id'], ['id'])
    op.create_foreign_key('fk_orders_hot_deal_id_hot_deals', 'orders', 'hot_deals',
                          ['hot_deal_id'], ['id'])
