"""plan signatures and temporary roles: a sign-off's signer name, Ed25519 public key and detached signature;
an expiry on a user-group membership (a temporary role assignment)

Revision ID: 0011
Revises: 0010
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Nullable columns without defaults: an ALTER TABLE ADD on both SQLite and PostgreSQL, no table rebuild.
    op.add_column("plan_signoffs", sa.Column("signer_name", sa.String(200), nullable=True))
    op.add_column("plan_signoffs", sa.Column("public_key", sa.String(64), nullable=True))
    op.add_column("plan_signoffs", sa.Column("signature", sa.String(128), nullable=True))
    op.add_column("user_group_members", sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("user_group_members", schema=None) as batch_op:
        batch_op.drop_column("expires_at")
    with op.batch_alter_table("plan_signoffs", schema=None) as batch_op:
        batch_op.drop_column("signature")
        batch_op.drop_column("public_key")
        batch_op.drop_column("signer_name")
