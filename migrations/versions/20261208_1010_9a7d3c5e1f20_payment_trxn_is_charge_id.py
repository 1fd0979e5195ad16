"""payments: trxn_id is the charge id on every row (refunds too); a refund is unique by its re_ id

As the seeds' FAQ says: every payment row of a contribution (a payment, a failed payment, a
refund) carries the Stripe charge id as ``trxn_id``; a refund's own id stays in ``refund_id``,
so several partial refunds of one charge are several rows. Existing refund rows (``trxn_id`` =
the refund id until now) take their charge id; ``uq_payment_trxn`` becomes ``uq_payment_refund``
(processor, refund id) and ``uq_payment_charge`` (processor, charge id, rows that are not refunds).

Revision ID: 9a7d3c5e1f20
Revises: b4c8e2a6d0f1
Create Date: 2026-12-07 18:00:00

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '9a7d3c5e1f20'
down_revision = 'b4c8e2a6d0f1'
branch_labels = None
depends_on = None


# SQLite's batch mode copies the table and leaves out indexes on expressions (the list pages' indexes on
# payment): their CREATE statements are kept and run again after the copy.
def _keeping_sqlite_indexes(work):
    bind = op.get_bind()
    if bind.dialect.name != "sqlite":
        work()
        return
    saved = bind.execute(sa.text("SELECT name, sql FROM sqlite_master WHERE type = 'index' "
                                 "AND tbl_name = 'payment' AND sql IS NOT NULL")).all()
    work()
    have = {r[0] for r in bind.execute(sa.text("SELECT name FROM sqlite_master WHERE type = 'index' "
                                               "AND tbl_name = 'payment'"))}
    for name, sql in saved:
        if name not in have:
            bind.execute(sa.text(sql))


def _upgrade_table():
    with op.batch_alter_table('payment', schema=None) as batch_op:
        batch_op.drop_constraint('uq_payment_trxn', type_='unique')
    op.execute("UPDATE payment SET trxn_id = charge_id WHERE refund_id IS NOT NULL AND charge_id IS NOT NULL")
    with op.batch_alter_table('payment', schema=None) as batch_op:
        batch_op.create_unique_constraint('uq_payment_refund', ['processor_id', 'refund_id'])


def upgrade():
    _keeping_sqlite_indexes(_upgrade_table)
    op.create_index('uq_payment_charge', 'payment', ['processor_id', 'trxn_id'], unique=True,
                    sqlite_where=sa.text('refund_id IS NULL'), postgresql_where=sa.text('refund_id IS NULL'))


def _downgrade_table():
    with op.batch_alter_table('payment', schema=None) as batch_op:
        batch_op.drop_constraint('uq_payment_refund', type_='unique')
    op.execute("UPDATE payment SET trxn_id = refund_id WHERE refund_id IS NOT NULL")
    # Failed charges are not payments before this revision (their contribution says it failed).
    op.execute("DELETE FROM payment WHERE status = 'Failed'")
    with op.batch_alter_table('payment', schema=None) as batch_op:
        batch_op.create_unique_constraint('uq_payment_trxn', ['processor_id', 'trxn_id'])


def downgrade():
    op.drop_index('uq_payment_charge', table_name='payment')
    _keeping_sqlite_indexes(_downgrade_table)
