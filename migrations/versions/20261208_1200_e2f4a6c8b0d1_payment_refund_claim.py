"""payment refund claim: a charge's row says a refund of it is being sent to Stripe, so two refunds of one
charge at once cannot both pass paydesk's over-refund check (admin/services/payments/refunds.py)

Revision ID: e2f4a6c8b0d1
Revises: c3e5a7b9d1f2
Create Date: 2026-12-08 12:00:00

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'e2f4a6c8b0d1'
down_revision = 'c3e5a7b9d1f2'
branch_labels = None
depends_on = None


# Plain ALTER TABLE on both databases (SQLite >= 3.35 drops a column in place): SQLite's batch mode would copy
# the table and leave out the list pages' indexes on expressions.
def upgrade():
    op.add_column('payment', sa.Column('refund_claimed_at', sa.DateTime(), nullable=True))


def downgrade():
    op.execute("ALTER TABLE payment DROP COLUMN refund_claimed_at")
