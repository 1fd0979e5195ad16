"""donor links (single-purpose, revocable), unverified customers, frequency of form gifts, unmatched payments

Revision ID: 3b63294dc93d
Revises: 5b2e7c41a9d3
Create Date: 2026-12-07 14:16:59.549119

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '3b63294dc93d'
down_revision = '5b2e7c41a9d3'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('unmatched_payment',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('processor_id', sa.Integer(), nullable=False),
    sa.Column('session_id', sa.String(length=255), nullable=False),
    sa.Column('named_contribution_id', sa.Integer(), nullable=True),
    sa.Column('contribution_id', sa.Integer(), nullable=True),
    sa.Column('amount', sa.BigInteger(), nullable=True),
    sa.Column('currency', sa.String(length=3), nullable=True),
    sa.Column('customer_id', sa.String(length=255), nullable=True),
    sa.Column('reason', sa.String(length=500), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('reviewed_at', sa.DateTime(), nullable=True),
    sa.Column('reviewed_by', sa.String(length=255), nullable=True),
    sa.ForeignKeyConstraint(['processor_id'], ['payment_processor.id'], name=op.f('fk_unmatched_payment_processor_id_payment_processor'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_unmatched_payment')),
    sa.UniqueConstraint('processor_id', 'session_id', name='uq_unmatched_payment_session')
    )
    with op.batch_alter_table('unmatched_payment', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_unmatched_payment_created_at'), ['created_at'], unique=False)

    op.create_table('donor_link',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('contact_id', sa.Integer(), nullable=False),
    sa.Column('form_id', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('created_by', sa.String(length=255), nullable=True),
    sa.Column('contribution_id', sa.Integer(), nullable=True),
    sa.Column('used_at', sa.DateTime(), nullable=True),
    sa.Column('revoked_at', sa.DateTime(), nullable=True),
    sa.Column('revoked_by', sa.String(length=255), nullable=True),
    sa.ForeignKeyConstraint(['contact_id'], ['contact.id'], name=op.f('fk_donor_link_contact_id_contact'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['form_id'], ['donation_form.id'], name=op.f('fk_donor_link_form_id_donation_form'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_donor_link'))
    )
    with op.batch_alter_table('donor_link', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_donor_link_contact_id'), ['contact_id'], unique=False)

    with op.batch_alter_table('contribution', schema=None) as batch_op:
        batch_op.add_column(sa.Column('frequency', sa.String(length=16), nullable=True))

    with op.batch_alter_table('stripe_customer', schema=None) as batch_op:
        batch_op.add_column(sa.Column('unverified', sa.Boolean(), server_default=sa.false(), nullable=False))



def downgrade():
    with op.batch_alter_table('stripe_customer', schema=None) as batch_op:
        batch_op.drop_column('unverified')

    with op.batch_alter_table('contribution', schema=None) as batch_op:
        batch_op.drop_column('frequency')

    with op.batch_alter_table('donor_link', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_donor_link_contact_id'))

    op.drop_table('donor_link')
    with op.batch_alter_table('unmatched_payment', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_unmatched_payment_created_at'))

    op.drop_table('unmatched_payment')
