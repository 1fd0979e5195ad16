"""outgoing notifications: endpoints, deliveries, outbox retry window

Revision ID: b5d2e8f1a3c7
Revises: d7a1c0e5f2b9
Create Date: 2026-12-07 19:00:00

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'b5d2e8f1a3c7'
down_revision = 'd7a1c0e5f2b9'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('outbox_task', schema=None) as batch_op:
        batch_op.add_column(sa.Column('retry_until', sa.DateTime(), nullable=True))
    op.create_table(
        'notification_endpoint',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('url', sa.String(length=2048), nullable=False),
        sa.Column('description', sa.String(length=255), nullable=True),
        sa.Column('events', sa.String(length=255), nullable=False),
        sa.Column('secrets', sa.Text(), nullable=False),
        sa.Column('secret_hint', sa.String(length=32), nullable=False),
        sa.Column('previous_hint', sa.String(length=32), nullable=True),
        sa.Column('previous_expires_at', sa.DateTime(), nullable=True),
        sa.Column('created_by', sa.String(length=255), nullable=True),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_notification_endpoint')),
    )
    op.create_table(
        'notification_delivery',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('endpoint_id', sa.Integer(), nullable=False),
        sa.Column('notification_id', sa.String(length=40), nullable=False),
        sa.Column('type', sa.String(length=64), nullable=False),
        sa.Column('object_type', sa.String(length=32), nullable=False),
        sa.Column('object_id', sa.Integer(), nullable=False),
        sa.Column('body', sa.Text(), nullable=False),
        sa.Column('task_id', sa.Integer(), nullable=True),
        sa.Column('response_code', sa.Integer(), nullable=True),
        sa.Column('last_attempt_at', sa.DateTime(), nullable=True),
        sa.Column('delivered_at', sa.DateTime(), nullable=True),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(['endpoint_id'], ['notification_endpoint.id'],
                                name=op.f('fk_notification_delivery_endpoint_id_notification_endpoint'),
                                ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['task_id'], ['outbox_task.id'],
                                name=op.f('fk_notification_delivery_task_id_outbox_task'), ondelete='SET NULL'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_notification_delivery')),
    )
    with op.batch_alter_table('notification_delivery', schema=None) as batch_op:
        batch_op.create_index('ix_notification_delivery_endpoint', ['endpoint_id', 'id'], unique=False)
        batch_op.create_index(batch_op.f('ix_notification_delivery_notification_id'), ['notification_id'],
                              unique=False)
        batch_op.create_index(batch_op.f('ix_notification_delivery_task_id'), ['task_id'], unique=False)


def downgrade():
    op.drop_table('notification_delivery')
    op.drop_table('notification_endpoint')
    with op.batch_alter_table('outbox_task', schema=None) as batch_op:
        batch_op.drop_column('retry_until')
