"""Indexes for the /events page: newest first, by status, by type and status (bench/events_page.py)

Revision ID: 8c1f0e2d4b7a
Revises: 63cd2b3c563d
Create Date: 2026-11-29 08:30:00.000000

"""
from alembic import op


# revision identifiers, used by Alembic.
revision = '8c1f0e2d4b7a'
down_revision = '63cd2b3c563d'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('stripe_event', schema=None) as batch_op:
        batch_op.create_index('ix_stripe_event_created_id', ['created', 'id'], unique=False)
        batch_op.create_index('ix_stripe_event_status_created_id', ['status', 'created', 'id'], unique=False)
        batch_op.create_index('ix_stripe_event_type_status_created_id', ['type', 'status', 'created', 'id'],
                              unique=False)


def downgrade():
    with op.batch_alter_table('stripe_event', schema=None) as batch_op:
        batch_op.drop_index('ix_stripe_event_type_status_created_id')
        batch_op.drop_index('ix_stripe_event_status_created_id')
        batch_op.drop_index('ix_stripe_event_created_id')
