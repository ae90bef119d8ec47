"""hardening: command expiry and other small columns

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    _system_log_upgrade()


def downgrade() -> None:
    _system_log_downgrade()


def _system_log_upgrade() -> None:
    """DeviceSystemLogEvents: the system-log sensor's rows (journald or syslog files)."""
    op.create_table('DeviceSystemLogEvents',
    sa.Column('Timestamp', sa.DateTime(timezone=True), nullable=False),
    sa.Column('DeviceId', sa.Text(), nullable=False),
    sa.Column('DeviceName', sa.Text(), nullable=True),
    sa.Column('ActionType', sa.Text(), nullable=False),
    sa.Column('ReportId', sa.BigInteger(), nullable=False),
    sa.Column('ProcessName', sa.Text(), nullable=True),
    sa.Column('ProcessId', sa.BigInteger(), nullable=True),
    sa.Column('Facility', sa.Text(), nullable=True),
    sa.Column('SeverityLevel', sa.Text(), nullable=True),
    sa.Column('SystemdUnit', sa.Text(), nullable=True),
    sa.Column('SyslogMessage', sa.Text(), nullable=True),
    sa.Column('AdditionalFields', sa.Text(), nullable=True)
    )
    with op.batch_alter_table('DeviceSystemLogEvents', schema=None) as batch_op:
        batch_op.create_index('ix_DeviceSystemLogEvents_device_time', ['DeviceId', 'Timestamp'], unique=False)
        batch_op.create_index('ix_DeviceSystemLogEvents_time', ['Timestamp'], unique=False)


def _system_log_downgrade() -> None:
    with op.batch_alter_table('DeviceSystemLogEvents', schema=None) as batch_op:
        batch_op.drop_index('ix_DeviceSystemLogEvents_time')
        batch_op.drop_index('ix_DeviceSystemLogEvents_device_time')
    op.drop_table('DeviceSystemLogEvents')
