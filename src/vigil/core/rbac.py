"""Permissions with Defender's names, and the two roles of basic mode."""

from __future__ import annotations

from enum import StrEnum


class Permission(StrEnum):
    VIEW_DATA_SECOPS = "View data – Security operations"
    VIEW_DATA_TVM = "View data – Threat and vulnerability management"
    ALERTS_INVESTIGATION = "Alerts investigation"
    REMEDIATION_SECOPS = "Active remediation actions – Security operations"
    TVM_EXCEPTION_HANDLING = "Active remediation actions – TVM – Exception handling"
    TVM_REMEDIATION_HANDLING = "Active remediation actions – TVM – Remediation handling"
    TVM_APPLICATION_HANDLING = "Active remediation actions – TVM – Application handling"
    MANAGE_PORTAL_SETTINGS = "Manage portal system settings"
    MANAGE_SECURITY_SETTINGS = "Manage security settings"
    LIVE_RESPONSE_BASIC = "Live response capabilities – Basic"
    LIVE_RESPONSE_ADVANCED = "Live response capabilities – Advanced"


class BasicRole(StrEnum):
    """Basic permissions mode: full access or read-only, nothing in between."""

    FULL_ACCESS = "full-access"
    READ_ONLY = "read-only"


_READ_ONLY = frozenset({Permission.VIEW_DATA_SECOPS, Permission.VIEW_DATA_TVM})

BASIC_ROLE_PERMISSIONS: dict[BasicRole, frozenset[Permission]] = {
    BasicRole.FULL_ACCESS: frozenset(Permission),
    BasicRole.READ_ONLY: _READ_ONLY,
}


def permissions_of(role: BasicRole) -> frozenset[Permission]:
    return BASIC_ROLE_PERMISSIONS[role]
