"""reconcile scans taken by a job: the job that takes one, and when it finished (NULL while it runs)

Revision ID: e7a9c3d5b1f2
Revises: c4d1e2f3a5b6
Create Date: 2026-12-07 18:00:00

"""

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = "e7a9c3d5b1f2"
down_revision = "c4d1e2f3a5b6"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("reconcile_scan", schema=None) as batch_op:
        batch_op.add_column(sa.Column("job_id", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("finished_at", sa.DateTime(), nullable=True))
        batch_op.create_index("ix_reconcile_scan_job_id", ["job_id"], unique=False)
    op.execute("UPDATE reconcile_scan SET finished_at = taken_at")


def downgrade():
    with op.batch_alter_table("reconcile_scan", schema=None) as batch_op:
        batch_op.drop_index("ix_reconcile_scan_job_id")
        batch_op.drop_column("finished_at")
        batch_op.drop_column("job_id")
