"""payments: trxn_id is the charge id on every row (refunds too); a refund is unique by its re_ id

As the seeds' FAQ says: every payment row of a contribution (a payment, a failed payment, a
refund) carries the Stripe charge id as ``trxn_id``; a refund's own id stays in ``refund_id``,
so several partial refunds of one charge are several rows. Existing refund rows (``trxn_id`` =
the refund id until now) take their charge id; ``uq_payment_trxn`` becomes ``uq_payment_refund``
(processor, refund id) and ``uq_payment_charge`` (processor, charge id, rows that are not refunds).

Revision ID: 9a7d3c5e1f20
Revises: 7d3e9a1c5f20
Create Date: 2026-12-07 18:00:00

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '9a7d3c5e1f20'
down_revision = '7d3e9a1c5f20'
branch_labels = None
depends_on = None


# SQLite's batch mode copies the table and leaves out indexes on expressions (list_page_indexes made two on
# payment): drop them first and make them again after.
PAYMENT_WHEN = sa.text("coalesce(payment_date, created_at)")


def _drop_expression_indexes():
    op.drop_index('ix_payment_status_when_id', table_name='payment')
    op.drop_index('ix_payment_when_id', table_name='payment')


def _create_expression_indexes():
    op.create_index('ix_payment_when_id', 'payment', [PAYMENT_WHEN, 'id'], unique=False)
    op.create_index('ix_payment_status_when_id', 'payment', ['status', PAYMENT_WHEN, 'id'], unique=False)


def upgrade():
    _drop_expression_indexes()
    with op.batch_alter_table('payment', schema=None) as batch_op:
        batch_op.drop_constraint('uq_payment_trxn', type_='unique')
    op.execute("UPDATE payment SET trxn_id = charge_id WHERE refund_id IS NOT NULL AND charge_id IS NOT NULL")
    with op.batch_alter_table('payment', schema=None) as batch_op:
        batch_op.create_unique_constraint('uq_payment_refund', ['processor_id', 'refund_id'])
    op.create_index('uq_payment_charge', 'payment', ['processor_id', 'trxn_id'], unique=True,
                    sqlite_where=sa.text('refund_id IS NULL'), postgresql_where=sa.text('refund_id IS NULL'))
    _create_expression_indexes()


def downgrade():
    _drop_expression_indexes()
    op.drop_index('uq_payment_charge', table_name='payment')
    with op.batch_alter_table('payment', schema=None) as batch_op:
        batch_op.drop_constraint('uq_payment_refund', type_='unique')
    op.execute("UPDATE payment SET trxn_id = refund_id WHERE refund_id IS NOT NULL")
    # Failed charges are not payments before this revision (their contribution says it failed).
    op.execute("DELETE FROM payment WHERE status = 'Failed'")
    with op.batch_alter_table('payment', schema=None) as batch_op:
        batch_op.create_unique_constraint('uq_payment_trxn', ['processor_id', 'trxn_id'])
    _create_expression_indexes()
