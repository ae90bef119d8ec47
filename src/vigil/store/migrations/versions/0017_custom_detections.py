"""custom detections: hunting queries on a schedule, their runs and the (rule, DeviceId, ReportId) dedup keys
(issue 24)

Revision ID: 0017
Revises: 0016
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "custom_detections",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("display_name", sa.String(length=256), nullable=False),
        sa.Column("query_text", sa.Text(), nullable=False),
        sa.Column("period", sa.String(length=8), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("title", sa.String(length=512), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("severity", sa.String(length=16), nullable=False),
        sa.Column("category", sa.String(length=64), nullable=False),
        sa.Column("mitre_techniques", sa.JSON(), nullable=False),
        sa.Column("response_actions", sa.JSON(), nullable=False),
        sa.Column("device_group_ids", sa.JSON(), nullable=True),
        sa.Column("created_by", sa.String(length=255), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_modified_by", sa.String(length=255), nullable=False),
        sa.Column("last_modified_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_run_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_run_status", sa.String(length=16), nullable=True),
        sa.Column("last_failure_reason", sa.Text(), nullable=True),
        sa.Column("consecutive_failures", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_custom_detections")),
        sa.UniqueConstraint("display_name", name=op.f("uq_custom_detections_display_name")),
    )
    op.create_table(
        "custom_detection_runs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("detection_id", sa.Integer(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("duration_ms", sa.Float(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("rows", sa.Integer(), nullable=False),
        sa.Column("new_hits", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(["detection_id"], ["custom_detections.id"], ondelete="CASCADE",
                                name=op.f("fk_custom_detection_runs_detection_id_custom_detections")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_custom_detection_runs")),
    )
    op.create_index(op.f("ix_custom_detection_runs_detection_id"), "custom_detection_runs", ["detection_id"])
    op.create_table(
        "custom_detection_hits",
        sa.Column("detection_id", sa.Integer(), nullable=False),
        sa.Column("device_id", sa.String(length=40), nullable=False),
        sa.Column("report_id", sa.String(length=64), nullable=False),
        sa.Column("alert_id", sa.String(length=40), nullable=False),
        sa.Column("seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["detection_id"], ["custom_detections.id"], ondelete="CASCADE",
                                name=op.f("fk_custom_detection_hits_detection_id_custom_detections")),
        sa.PrimaryKeyConstraint("detection_id", "device_id", "report_id", name=op.f("pk_custom_detection_hits")),
    )


def downgrade() -> None:
    op.drop_table("custom_detection_hits")
    op.drop_index(op.f("ix_custom_detection_runs_detection_id"), table_name="custom_detection_runs")
    op.drop_table("custom_detection_runs")
    op.drop_table("custom_detections")
