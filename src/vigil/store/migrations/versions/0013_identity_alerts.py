"""identity alerts: an alert on an account rather than a device (sustained password guessing, issue 14)

machine_id becomes optional and account_name names the account such an alert is about.

Revision ID: 0013
Revises: 0012
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("alerts", schema=None) as batch_op:
        batch_op.alter_column("machine_id", existing_type=sa.String(length=40), nullable=True)
        batch_op.add_column(sa.Column("account_name", sa.String(length=256), nullable=True))


def downgrade() -> None:
    op.execute("DELETE FROM alert_comments WHERE alert_id IN (SELECT id FROM alerts WHERE machine_id IS NULL)")
    op.execute("DELETE FROM alerts WHERE machine_id IS NULL")
    with op.batch_alter_table("alerts", schema=None) as batch_op:
        batch_op.drop_column("account_name")
        batch_op.alter_column("machine_id", existing_type=sa.String(length=40), nullable=False)
