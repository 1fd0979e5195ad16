"""reconcile scans: a comparison with Stripe kept for the page's views and the fix-all job

Revision ID: 5b2e7c41a9d3
Revises: 8c1f0e2d4b7a
Create Date: 2026-11-29 10:00:00

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '5b2e7c41a9d3'
down_revision = '8c1f0e2d4b7a'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('reconcile_scan',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('processor_id', sa.Integer(), nullable=False),
    sa.Column('objects', sa.String(length=64), nullable=False),
    sa.Column('period', sa.String(length=128), nullable=False),
    sa.Column('since', sa.DateTime(), nullable=False),
    sa.Column('until', sa.DateTime(), nullable=False),
    sa.Column('taken_at', sa.DateTime(), nullable=False),
    sa.Column('rows', sa.JSON(), nullable=False),
    sa.ForeignKeyConstraint(['processor_id'], ['payment_processor.id'], name=op.f('fk_reconcile_scan_processor_id_payment_processor'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_reconcile_scan'))
    )
    with op.batch_alter_table('reconcile_scan', schema=None) as batch_op:
        batch_op.create_index('ix_reconcile_scan_lookup', ['processor_id', 'objects', 'taken_at'], unique=False)


def downgrade():
    with op.batch_alter_table('reconcile_scan', schema=None) as batch_op:
        batch_op.drop_index('ix_reconcile_scan_lookup')

    op.drop_table('reconcile_scan')
