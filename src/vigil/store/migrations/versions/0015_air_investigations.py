"""air: automated investigations, their remediations, and ask-an-expert cases (issue 23)

Revision ID: 0015
Revises: 0014
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "air_investigations",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("machine_id", sa.String(length=40), nullable=False),
        sa.Column("triggering_alert_id", sa.String(length=64), nullable=True),
        sa.Column("incident_id", sa.Integer(), nullable=True),
        sa.Column("parent_id", sa.Integer(), nullable=True),
        sa.Column("triggered_by", sa.String(length=16), nullable=False),
        sa.Column("requested_by", sa.String(length=256), nullable=False),
        sa.Column("state", sa.String(length=32), nullable=False),
        sa.Column("status_details", sa.Text(), nullable=False),
        sa.Column("automation_level", sa.String(length=64), nullable=False),
        sa.Column("start_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("end_time", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_update_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("cancelled_by", sa.String(length=256), nullable=True),
        sa.Column("entities", sa.JSON(), nullable=False),
        sa.Column("verdicts", sa.JSON(), nullable=False),
        sa.Column("log", sa.JSON(), nullable=False),
        sa.Column("expansion", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(["machine_id"], ["devices.id"], name=op.f("fk_air_investigations_machine_id_devices")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_air_investigations")),
    )
    op.create_index(op.f("ix_air_investigations_machine_id"), "air_investigations", ["machine_id"])
    op.create_index(op.f("ix_air_investigations_triggering_alert_id"), "air_investigations", ["triggering_alert_id"])
    op.create_index(op.f("ix_air_investigations_state"), "air_investigations", ["state"])
    op.create_table(
        "air_remediations",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("investigation_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("entity_key", sa.String(length=2048), nullable=False),
        sa.Column("machine_id", sa.String(length=40), nullable=False),
        sa.Column("target_path", sa.String(length=4096), nullable=False),
        sa.Column("parameters", sa.JSON(), nullable=False),
        sa.Column("decision", sa.String(length=32), nullable=False),
        sa.Column("action_id", sa.String(length=40), nullable=True),
        sa.Column("why", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["investigation_id"], ["air_investigations.id"],
                                name=op.f("fk_air_remediations_investigation_id_air_investigations")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_air_remediations")),
    )
    op.create_index(op.f("ix_air_remediations_investigation_id"), "air_remediations", ["investigation_id"])
    op.create_index(op.f("ix_air_remediations_action_id"), "air_remediations", ["action_id"])
    op.create_table(
        "expert_cases",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("source_type", sa.String(length=16), nullable=False),
        sa.Column("source_id", sa.String(length=64), nullable=False),
        sa.Column("machine_ids", sa.JSON(), nullable=False),
        sa.Column("expert_group", sa.String(length=128), nullable=False),
        sa.Column("question", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("requested_by", sa.String(length=256), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("answer", sa.Text(), nullable=True),
        sa.Column("answered_by", sa.String(length=256), nullable=True),
        sa.Column("answered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("hunting_queries", sa.JSON(), nullable=False),
        sa.Column("recommended_actions", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_expert_cases")),
    )
    op.create_index(op.f("ix_expert_cases_status"), "expert_cases", ["status"])


def downgrade() -> None:
    op.drop_table("expert_cases")
    op.drop_table("air_remediations")
    op.drop_table("air_investigations")
