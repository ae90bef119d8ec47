"""device identity and reported changes

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('device_groups', schema=None) as batch_op:
        batch_op.add_column(sa.Column('trust_reported_identity', sa.Boolean(), nullable=False,
                                      server_default=sa.false()))
    with op.batch_alter_table('devices', schema=None) as batch_op:
        batch_op.add_column(sa.Column('identity_established_at', sa.DateTime(timezone=True), nullable=True))
    # Devices enrolled before this revision keep the identity they have now as their accepted one:
    # otherwise their next report, whatever it says, would be taken as their first.
    op.execute("UPDATE devices SET identity_established_at = first_seen")

    op.create_table(
        'device_identity_changes',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('device_id', sa.String(length=40), nullable=False),
        sa.Column('status', sa.String(length=16), nullable=False),
        sa.Column('before', sa.JSON(), nullable=False),
        sa.Column('after', sa.JSON(), nullable=False),
        sa.Column('detected_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('last_reported_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('reports', sa.Integer(), nullable=False),
        sa.Column('revision', sa.Integer(), nullable=False),
        sa.Column('decided_by', sa.String(length=255), nullable=True),
        sa.Column('decided_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('comment', sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(['device_id'], ['devices.id'],
                                name=op.f('fk_device_identity_changes_device_id_devices')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_device_identity_changes')),
    )
    with op.batch_alter_table('device_identity_changes', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_device_identity_changes_device_id'), ['device_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('device_identity_changes', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_device_identity_changes_device_id'))
    op.drop_table('device_identity_changes')
    with op.batch_alter_table('devices', schema=None) as batch_op:
        batch_op.drop_column('identity_established_at')
    with op.batch_alter_table('device_groups', schema=None) as batch_op:
        batch_op.drop_column('trust_reported_identity')
