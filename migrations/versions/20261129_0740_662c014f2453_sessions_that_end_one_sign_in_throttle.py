"""sessions that end; one sign-in throttle

Revision ID: 662c014f2453
Revises: 56702f6811e2
Create Date: 2026-11-29 07:40:00

- user.session_token: part of every session's user id; changing it (sign-out, new
  password, an admin revoking sessions) ends every session signed in before. Existing
  users get a random token, so sessions from before this upgrade end once.
- user.failed_logins and user.locked_until go: sign-in failures are counted only in
  rate_limit, per account at an address and per address (admin/services/auth.py).
  The old per-email rows (login-email:...) are removed with them.
"""
import secrets

import sqlalchemy as sa
from alembic import op

revision = '662c014f2453'
down_revision = '56702f6811e2'
branch_labels = None
depends_on = None

user = sa.table('user', sa.column('id', sa.Integer), sa.column('session_token', sa.String(64)))
rate_limit = sa.table('rate_limit', sa.column('key', sa.String(255)))


def upgrade():
    with op.batch_alter_table('user', schema=None) as batch_op:
        batch_op.add_column(sa.Column('session_token', sa.String(length=64), nullable=True))
        batch_op.drop_column('failed_logins')
        batch_op.drop_column('locked_until')

    conn = op.get_bind()
    for (user_id,) in conn.execute(sa.select(user.c.id)).all():
        conn.execute(user.update().where(user.c.id == user_id).values(session_token=secrets.token_urlsafe(32)))
    conn.execute(rate_limit.delete().where(rate_limit.c.key.like('login-email:%')))

    with op.batch_alter_table('user', schema=None) as batch_op:
        batch_op.alter_column('session_token', existing_type=sa.String(length=64), nullable=False)


def downgrade():
    with op.batch_alter_table('user', schema=None) as batch_op:
        batch_op.add_column(sa.Column('failed_logins', sa.Integer(), nullable=False, server_default='0'))
        batch_op.add_column(sa.Column('locked_until', sa.DateTime(), nullable=True))
        batch_op.drop_column('session_token')
    with op.batch_alter_table('user', schema=None) as batch_op:
        batch_op.alter_column('failed_logins', existing_type=sa.Integer(), server_default=None)
    op.execute(rate_limit.delete().where(rate_limit.c.key.like('login-account:%')))
