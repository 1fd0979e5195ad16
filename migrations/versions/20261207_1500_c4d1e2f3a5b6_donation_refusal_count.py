"""donation refusals tallied: one row stands for ``count`` refusals

Revision ID: c4d1e2f3a5b6
Revises: 3b63294dc93d
Create Date: 2026-11-30 09:00:00

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'c4d1e2f3a5b6'
down_revision = '3b63294dc93d'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('donation_refusal', schema=None) as batch_op:
        batch_op.add_column(sa.Column('count', sa.Integer(), server_default='1', nullable=False))


def downgrade():
    with op.batch_alter_table('donation_refusal', schema=None) as batch_op:
        batch_op.drop_column('count')
