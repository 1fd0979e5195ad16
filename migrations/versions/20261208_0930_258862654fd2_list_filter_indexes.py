"""Indexes for the filtered list views: one processor's rows per status (events, contributions, payments, intents)
and the refunds among the payments, so that their capped counts and "is it narrow?" counts read a bounded index
range (bench/list_statements.py)

Revision ID: 258862654fd2
Revises: 7d3e9a1c5f20
Create Date: 2026-12-08 09:30:00.000000

"""
import sqlalchemy as sa
from alembic import op


# revision identifiers, used by Alembic.
revision = '258862654fd2'
down_revision = '7d3e9a1c5f20'
branch_labels = None
depends_on = None

CONTRIBUTION_WHEN = sa.text("coalesce(receive_date, created_at)")
PAYMENT_WHEN = sa.text("coalesce(payment_date, created_at)")
REFUNDS = sa.text("refund_id IS NOT NULL")


def upgrade():
    op.create_index('ix_stripe_event_processor_status_created_id', 'stripe_event',
                    ['processor_id', 'status', 'created', 'id'], unique=False)
    op.create_index('ix_contribution_processor_status_when_id', 'contribution',
                    ['processor_id', 'status', CONTRIBUTION_WHEN, 'id'], unique=False)
    op.create_index('ix_payment_processor_status_when_id', 'payment',
                    ['processor_id', 'status', PAYMENT_WHEN, 'id'], unique=False)
    op.create_index('ix_payment_refund_when_id', 'payment', [PAYMENT_WHEN, 'id'], unique=False,
                    sqlite_where=REFUNDS, postgresql_where=REFUNDS)
    op.create_index('ix_payment_refund_processor_when_id', 'payment', ['processor_id', PAYMENT_WHEN, 'id'],
                    unique=False, sqlite_where=REFUNDS, postgresql_where=REFUNDS)
    op.create_index('ix_payment_refund_status_processor_when_id', 'payment',
                    ['status', 'processor_id', PAYMENT_WHEN, 'id'], unique=False,
                    sqlite_where=REFUNDS, postgresql_where=REFUNDS)
    op.create_index('ix_stripe_paymentintent_processor_status_created_id', 'stripe_paymentintent',
                    ['processor_id', 'status', 'created_date', 'id'], unique=False)


def downgrade():
    op.drop_index('ix_stripe_paymentintent_processor_status_created_id', table_name='stripe_paymentintent')
    op.drop_index('ix_payment_refund_status_processor_when_id', table_name='payment')
    op.drop_index('ix_payment_refund_processor_when_id', table_name='payment')
    op.drop_index('ix_payment_refund_when_id', table_name='payment')
    op.drop_index('ix_payment_processor_status_when_id', table_name='payment')
    op.drop_index('ix_contribution_processor_status_when_id', table_name='contribution')
    op.drop_index('ix_stripe_event_processor_status_created_id', table_name='stripe_event')
