"""tvm: the secure configuration assessment each agent sends (DeviceTvmSecureConfigurationAssessment, one row per
device and ConfigurationId, Defender's columns) (issue 19)

Revision ID: 0020
Revises: 0019
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0020"
down_revision = "0019"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "DeviceTvmSecureConfigurationAssessment",
        sa.Column("DeviceId", sa.Text(), nullable=False),
        sa.Column("DeviceName", sa.Text(), nullable=True),
        sa.Column("OSPlatform", sa.Text(), nullable=True),
        sa.Column("Timestamp", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ConfigurationId", sa.Text(), nullable=False),
        sa.Column("ConfigurationCategory", sa.Text(), nullable=True),
        sa.Column("ConfigurationSubcategory", sa.Text(), nullable=True),
        sa.Column("ConfigurationImpact", sa.Float(), nullable=True),
        sa.Column("IsCompliant", sa.Boolean(), nullable=True),
        sa.Column("IsApplicable", sa.Boolean(), nullable=True),
        sa.Column("Context", sa.Text(), nullable=True),
        sa.Column("IsExpectedUserImpact", sa.Boolean(), nullable=True),
        sa.Column("ConfigurationName", sa.Text(), nullable=True),
        sa.Column("RemediationOptions", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("DeviceId", "ConfigurationId", name=op.f("pk_DeviceTvmSecureConfigurationAssessment")),
    )
    op.create_index("ix_DeviceTvmSecureConfigurationAssessment_ConfigurationId",
                    "DeviceTvmSecureConfigurationAssessment", ["ConfigurationId"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_DeviceTvmSecureConfigurationAssessment_ConfigurationId",
                  table_name="DeviceTvmSecureConfigurationAssessment")
    op.drop_table("DeviceTvmSecureConfigurationAssessment")
