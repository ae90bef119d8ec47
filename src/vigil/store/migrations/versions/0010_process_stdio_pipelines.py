"""process stdio and pipelines: process group, stdin/stdout/stderr and pipeline members on DeviceProcessEvents

Revision ID: 0010
Revises: 0009
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

_COLUMNS = (
    ("ProcessGroupId", sa.BigInteger),
    ("ProcessStdin", sa.Text),
    ("ProcessStdout", sa.Text),
    ("ProcessStderr", sa.Text),
    ("PipelineMembers", sa.Text),  # JSON, as every dynamic column
)


def upgrade() -> None:
    # Nullable columns without defaults: an ALTER TABLE ADD on both SQLite and PostgreSQL, no table rebuild.
    for name, kind in _COLUMNS:
        op.add_column("DeviceProcessEvents", sa.Column(name, kind(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("DeviceProcessEvents", schema=None) as batch_op:
        for name, _kind in reversed(_COLUMNS):
            batch_op.drop_column(name)
