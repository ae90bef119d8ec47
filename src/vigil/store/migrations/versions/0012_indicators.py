"""indicators: file hashes, certificate thumbprints, IP addresses, domains and URLs with an action
(Allowed, Audit, Warn, Block, BlockAndRemediate), an expiry and a device-group scope (issue 21)

Revision ID: 0012
Revises: 0011
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "indicators",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("indicator_value", sa.String(length=2048), nullable=False),
        sa.Column("indicator_type", sa.String(length=32), nullable=False),
        sa.Column("action", sa.String(length=32), nullable=False),
        sa.Column("title", sa.String(length=512), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("severity", sa.String(length=16), nullable=False),
        sa.Column("expiration_time", sa.DateTime(timezone=True), nullable=True),
        sa.Column("rbac_group_ids", sa.JSON(), nullable=False),
        sa.Column("generate_alert", sa.Boolean(), nullable=False),
        sa.Column("recommended_actions", sa.Text(), nullable=False),
        sa.Column("application", sa.String(length=256), nullable=False),
        sa.Column("created_by", sa.String(length=128), nullable=False),
        sa.Column("creation_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_updated_by", sa.String(length=128), nullable=False),
        sa.Column("last_update_time", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_indicators")),
        sa.UniqueConstraint("indicator_type", "indicator_value", name=op.f("uq_indicators_indicator_type_indicator_value")),
    )


def downgrade() -> None:
    op.drop_table("indicators")
