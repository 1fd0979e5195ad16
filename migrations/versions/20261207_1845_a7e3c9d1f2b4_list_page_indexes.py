"""Indexes for the record list pages: contributions, payments and subscriptions by coalesce(date, created_at),
intents by created date, each (but subscriptions) also per status (bench/list_pages.py)

Revision ID: a7e3c9d1f2b4
Revises: a7e3f1c29b54
Create Date: 2026-12-07 18:45:00.000000

"""
import sqlalchemy as sa
from alembic import op


# revision identifiers, used by Alembic.
revision = 'a7e3c9d1f2b4'
down_revision = 'a7e3f1c29b54'
branch_labels = None
depends_on = None

CONTRIBUTION_WHEN = sa.text("coalesce(receive_date, created_at)")
PAYMENT_WHEN = sa.text("coalesce(payment_date, created_at)")
RECUR_WHEN = sa.text("coalesce(start_date, created_at)")


def upgrade():
    op.create_index('ix_contribution_when_id', 'contribution', [CONTRIBUTION_WHEN, 'id'], unique=False)
    op.create_index('ix_contribution_status_when_id', 'contribution', ['status', CONTRIBUTION_WHEN, 'id'],
                    unique=False)
    op.create_index('ix_payment_when_id', 'payment', [PAYMENT_WHEN, 'id'], unique=False)
    op.create_index('ix_payment_status_when_id', 'payment', ['status', PAYMENT_WHEN, 'id'], unique=False)
    op.create_index('ix_contribution_recur_when_id', 'contribution_recur', [RECUR_WHEN, 'id'], unique=False)
    op.create_index('ix_stripe_paymentintent_created_id', 'stripe_paymentintent', ['created_date', 'id'],
                    unique=False)
    op.create_index('ix_stripe_paymentintent_status_created_id', 'stripe_paymentintent',
                    ['status', 'created_date', 'id'], unique=False)


def downgrade():
    op.drop_index('ix_stripe_paymentintent_status_created_id', table_name='stripe_paymentintent')
    op.drop_index('ix_stripe_paymentintent_created_id', table_name='stripe_paymentintent')
    op.drop_index('ix_contribution_recur_when_id', table_name='contribution_recur')
    op.drop_index('ix_payment_status_when_id', table_name='payment')
    op.drop_index('ix_payment_when_id', table_name='payment')
    op.drop_index('ix_contribution_status_when_id', table_name='contribution')
    op.drop_index('ix_contribution_when_id', table_name='contribution')
