"""retention indexes: the worker deletes old idempotency answers, trigger feed items and ended jobs by age
(admin/services/core/retention.py) without reading the whole table

Revision ID: b4c8e2a6d0f1
Revises: 258862654fd2
Create Date: 2026-12-07 20:00:00

"""
from alembic import op


# revision identifiers, used by Alembic.
revision = 'b4c8e2a6d0f1'
down_revision = '258862654fd2'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('api_idempotency_key', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_api_idempotency_key_created_at'), ['created_at'], unique=False)
    with op.batch_alter_table('trigger_feed', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_trigger_feed_created_at'), ['created_at'], unique=False)
    with op.batch_alter_table('job', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_job_finished_at'), ['finished_at'], unique=False)


def downgrade():
    with op.batch_alter_table('job', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_job_finished_at'))
    with op.batch_alter_table('trigger_feed', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_trigger_feed_created_at'))
    with op.batch_alter_table('api_idempotency_key', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_api_idempotency_key_created_at'))
