"""tvm: the software inventory and weaknesses hunting reads (DeviceTvmSoftwareInventory,
DeviceTvmSoftwareVulnerabilities), each device's inventory state, daily exposure scores, remediation requests
and exceptions (issue 19)

Revision ID: 0016
Revises: 0015
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "DeviceTvmSoftwareInventory",
        sa.Column("DeviceId", sa.Text(), nullable=False),
        sa.Column("DeviceName", sa.Text(), nullable=True),
        sa.Column("OSPlatform", sa.Text(), nullable=True),
        sa.Column("OSVersion", sa.Text(), nullable=True),
        sa.Column("OSArchitecture", sa.Text(), nullable=True),
        sa.Column("SoftwareVendor", sa.Text(), nullable=True),
        sa.Column("SoftwareName", sa.Text(), nullable=True),
        sa.Column("SoftwareVersion", sa.Text(), nullable=True),
        sa.Column("EndOfSupportStatus", sa.Text(), nullable=True),
        sa.Column("EndOfSupportDate", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ProductCodeCpe", sa.Text(), nullable=True),
        sa.Column("SoftwarePurl", sa.Text(), nullable=False),
        sa.Column("Ecosystem", sa.Text(), nullable=True),
        sa.Column("SourcePackageName", sa.Text(), nullable=True),
        sa.Column("SourcePackageVersion", sa.Text(), nullable=True),
        sa.Column("FirstSeenTimestamp", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("DeviceId", "SoftwarePurl", name=op.f("pk_DeviceTvmSoftwareInventory")),
    )
    op.create_index(
        "ix_DeviceTvmSoftwareInventory_SoftwareName", "DeviceTvmSoftwareInventory", ["SoftwareName"], unique=False
    )
    op.create_table(
        "DeviceTvmSoftwareVulnerabilities",
        sa.Column("DeviceId", sa.Text(), nullable=False),
        sa.Column("DeviceName", sa.Text(), nullable=True),
        sa.Column("OSPlatform", sa.Text(), nullable=True),
        sa.Column("OSVersion", sa.Text(), nullable=True),
        sa.Column("OSArchitecture", sa.Text(), nullable=True),
        sa.Column("SoftwareVendor", sa.Text(), nullable=True),
        sa.Column("SoftwareName", sa.Text(), nullable=True),
        sa.Column("SoftwareVersion", sa.Text(), nullable=True),
        sa.Column("CveId", sa.Text(), nullable=False),
        sa.Column("VulnerabilitySeverityLevel", sa.Text(), nullable=True),
        sa.Column("RecommendedSecurityUpdate", sa.Text(), nullable=True),
        sa.Column("RecommendedSecurityUpdateId", sa.Text(), nullable=True),
        sa.Column("CveTags", sa.Text(), nullable=True),
        sa.Column("CveMitigationStatus", sa.Text(), nullable=True),
        sa.Column("SoftwarePurl", sa.Text(), nullable=False),
        sa.Column("Ecosystem", sa.Text(), nullable=True),
        sa.Column("AdvisoryIds", sa.Text(), nullable=True),
        sa.Column("FixedVersion", sa.Text(), nullable=True),
        sa.Column("MatchReason", sa.Text(), nullable=True),
        sa.Column("CvssScore", sa.Float(), nullable=True),
        sa.Column("EpssScore", sa.Float(), nullable=True),
        sa.Column("IsKnownExploited", sa.Boolean(), nullable=True),
        sa.Column("RiskScore", sa.Float(), nullable=True),
        sa.Column("FirstSeenTimestamp", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("DeviceId", "SoftwarePurl", "CveId", name=op.f("pk_DeviceTvmSoftwareVulnerabilities")),
    )
    op.create_index(
        "ix_DeviceTvmSoftwareVulnerabilities_CveId", "DeviceTvmSoftwareVulnerabilities", ["CveId"], unique=False
    )
    op.create_table(
        "tvm_exceptions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("recommendation_id", sa.String(length=600), nullable=False),
        sa.Column("justification", sa.String(length=32), nullable=False),
        sa.Column("comment", sa.Text(), nullable=False),
        sa.Column("scope", sa.String(length=16), nullable=False),
        sa.Column("rbac_group_ids", sa.JSON(), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("created_by", sa.String(length=255), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("cancelled_by", sa.String(length=255), nullable=True),
        sa.Column("cancelled_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tvm_exceptions")),
    )
    op.create_index(op.f("ix_tvm_exceptions_recommendation_id"), "tvm_exceptions", ["recommendation_id"], unique=False)
    op.create_table(
        "tvm_remediations",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("recommendation_id", sa.String(length=600), nullable=False),
        sa.Column("title", sa.String(length=1024), nullable=False),
        sa.Column("remediation_type", sa.String(length=32), nullable=False),
        sa.Column("priority", sa.String(length=16), nullable=False),
        sa.Column("due_on", sa.String(length=10), nullable=False),
        sa.Column("notes", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("rbac_group_ids", sa.JSON(), nullable=False),
        sa.Column("target_devices", sa.JSON(), nullable=False),
        sa.Column("created_by", sa.String(length=255), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tvm_remediations")),
    )
    op.create_index(
        op.f("ix_tvm_remediations_recommendation_id"), "tvm_remediations", ["recommendation_id"], unique=False
    )
    op.create_table(
        "tvm_score_history",
        sa.Column("day", sa.String(length=10), nullable=False),
        sa.Column("device_id", sa.String(length=40), nullable=False),
        sa.Column("exposure_score", sa.Integer(), nullable=False),
        sa.Column("weaknesses", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("day", "device_id", name=op.f("pk_tvm_score_history")),
    )
    op.create_table(
        "tvm_inventory_state",
        sa.Column("device_id", sa.String(length=40), nullable=False),
        sa.Column("series", sa.String(length=64), nullable=False),
        sa.Column("generation", sa.Integer(), nullable=False),
        sa.Column("pending_generation", sa.Integer(), nullable=True),
        sa.Column("next_part", sa.Integer(), nullable=False),
        sa.Column("out_of_sync", sa.Boolean(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("feed_sequence", sa.BigInteger(), nullable=True),
        sa.ForeignKeyConstraint(["device_id"], ["devices.id"], name=op.f("fk_tvm_inventory_state_device_id_devices")),
        sa.PrimaryKeyConstraint("device_id", name=op.f("pk_tvm_inventory_state")),
    )


def downgrade() -> None:
    op.drop_table("tvm_inventory_state")
    op.drop_table("tvm_score_history")
    op.drop_index(op.f("ix_tvm_remediations_recommendation_id"), table_name="tvm_remediations")
    op.drop_table("tvm_remediations")
    op.drop_index(op.f("ix_tvm_exceptions_recommendation_id"), table_name="tvm_exceptions")
    op.drop_table("tvm_exceptions")
    op.drop_index("ix_DeviceTvmSoftwareVulnerabilities_CveId", table_name="DeviceTvmSoftwareVulnerabilities")
    op.drop_table("DeviceTvmSoftwareVulnerabilities")
    op.drop_index("ix_DeviceTvmSoftwareInventory_SoftwareName", table_name="DeviceTvmSoftwareInventory")
    op.drop_table("DeviceTvmSoftwareInventory")
