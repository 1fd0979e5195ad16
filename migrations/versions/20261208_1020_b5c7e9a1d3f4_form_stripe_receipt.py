"""donation forms: "Stripe sends the receipt" (receipt_email on the payment; paydesk sends none)

Revision ID: b5c7e9a1d3f4
Revises: 9a7d3c5e1f20
Create Date: 2026-12-07 19:10:00

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'b5c7e9a1d3f4'
down_revision = '9a7d3c5e1f20'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('donation_form', schema=None) as batch_op:
        batch_op.add_column(sa.Column('stripe_receipt', sa.Boolean(), server_default=sa.false(), nullable=False))


def downgrade():
    with op.batch_alter_table('donation_form', schema=None) as batch_op:
        batch_op.drop_column('stripe_receipt')
