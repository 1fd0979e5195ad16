"""notification delivery retention: the worker deletes old delivery history by age
(admin/services/core/retention.py) through an index on created_at

Revision ID: c3e5a7b9d1f2
Revises: b5c7e9a1d3f4
Create Date: 2026-12-08 11:00:00

"""
from alembic import op


# revision identifiers, used by Alembic.
revision = 'c3e5a7b9d1f2'
down_revision = 'b5c7e9a1d3f4'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('notification_delivery', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_notification_delivery_created_at'), ['created_at'], unique=False)


def downgrade():
    with op.batch_alter_table('notification_delivery', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_notification_delivery_created_at'))
