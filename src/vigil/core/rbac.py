"""Permissions with Defender's names, basic-mode roles, and how RBAC mode turns roles into access."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from vigil.core.names import fold


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
    # Vigil's own: the deployment plan, its export and ring progress, with device counts but no device data.
    VIEW_PLAN_REPORTS = "View deployment plan and reports"

    @classmethod
    def _missing_(cls, value: object) -> Permission | None:
        """ASCII spellings are accepted wherever the name is: "View data - Security operations" (a hyphen for
        the en-dash, any case) or the short alias "view-data-secops"."""
        if not isinstance(value, str):
            return None
        key = fold(value)
        return next((p for p in cls if fold(p.value) == key or PERMISSION_ALIASES.get(p) == key), None)


# The short ASCII alias of each permission, for the command line and API tokens' scopes.
PERMISSION_ALIASES: dict[Permission, str] = {
    Permission.VIEW_DATA_SECOPS: "view-data-secops",
    Permission.VIEW_DATA_TVM: "view-data-tvm",
    Permission.ALERTS_INVESTIGATION: "alerts-investigation",
    Permission.REMEDIATION_SECOPS: "remediation-secops",
    Permission.TVM_EXCEPTION_HANDLING: "remediation-tvm-exceptions",
    Permission.TVM_REMEDIATION_HANDLING: "remediation-tvm-remediation",
    Permission.TVM_APPLICATION_HANDLING: "remediation-tvm-applications",
    Permission.MANAGE_PORTAL_SETTINGS: "manage-portal-settings",
    Permission.MANAGE_SECURITY_SETTINGS: "manage-security-settings",
    Permission.LIVE_RESPONSE_BASIC: "live-response-basic",
    Permission.LIVE_RESPONSE_ADVANCED: "live-response-advanced",
    Permission.VIEW_PLAN_REPORTS: "view-plan-reports",
}


class BasicRole(StrEnum):
    """Basic permissions mode: full access or read-only, nothing in between."""

    FULL_ACCESS = "full-access"
    READ_ONLY = "read-only"


_READ_ONLY = frozenset({Permission.VIEW_DATA_SECOPS, Permission.VIEW_DATA_TVM, Permission.VIEW_PLAN_REPORTS})

BASIC_ROLE_PERMISSIONS: dict[BasicRole, frozenset[Permission]] = {
    BasicRole.FULL_ACCESS: frozenset(Permission),
    BasicRole.READ_ONLY: _READ_ONLY,
}


def permissions_of(role: BasicRole) -> frozenset[Permission]:
    return BASIC_ROLE_PERMISSIONS[role]


class PermissionsMode(StrEnum):
    """Basic (full access / read-only) or RBAC; like Defender, switching to RBAC cannot be undone."""

    BASIC = "basic"
    RBAC = "rbac"


# The role every administrator holds in RBAC mode: all permissions on every device group.
ADMIN_ROLE_NAME = "Vigil administrator (default)"
# The built-in read-only role for the Business Owner / Stakeholder persona: the plan, its reports and ring
# progress (device counts), nothing of the devices themselves. Its permissions are fixed; its user groups are not.
STAKEHOLDER_ROLE_NAME = "Stakeholder"
STAKEHOLDER_PERMISSIONS = frozenset({Permission.VIEW_PLAN_REPORTS})


class UnknownPermission(ValueError):
    def __init__(self, name: str, where: str) -> None:
        super().__init__(f"{where}: unknown permission {name!r}; use one of: {', '.join(p.value for p in Permission)}")
        self.name, self.where = name, where


def parse_permissions(names: list[str], where: str = "permissions") -> frozenset[Permission]:
    out = set()
    for i, name in enumerate(names):
        try:
            out.add(Permission(name))
        except ValueError:
            raise UnknownPermission(name, f"{where}[{i}]") from None
    return frozenset(out)


@dataclass(frozen=True)
class Access:
    """What a caller may do, and on which device groups (None means every group)."""

    permissions: frozenset[Permission]
    device_group_ids: frozenset[int] | None

    def restricted_to(self, scopes: frozenset[Permission]) -> Access:
        return Access(self.permissions & scopes, self.device_group_ids)


@dataclass(frozen=True)
class UserGroupGrant:
    """One user group the user belongs to, with the union of its roles' permissions."""

    user_group_id: int
    permissions: frozenset[Permission]
    admin: bool


def access_of(
    mode: PermissionsMode, basic_role: BasicRole, grants: list[UserGroupGrant],
    device_group_access: dict[int, frozenset[int]],
) -> Access:
    """Defender's rule: a permission from the user's roles, on device groups open to the user's groups.

    ``device_group_access`` maps each device group to the user groups given access; a device group
    with no user groups is visible to everyone who holds a role.
    """
    if mode is PermissionsMode.BASIC:
        return Access(permissions_of(basic_role), None)
    if basic_role is BasicRole.FULL_ACCESS or any(g.admin for g in grants):
        return Access(frozenset(Permission), None)
    permissions = frozenset().union(*(g.permissions for g in grants)) if grants else frozenset()
    if not permissions:
        # Read-only users lose access in RBAC mode until a role is given to one of their groups.
        return Access(frozenset(), frozenset())
    mine = {g.user_group_id for g in grants}
    visible = frozenset(dg for dg, ugs in device_group_access.items() if not ugs or ugs & mine)
    return Access(permissions, visible)


# CDOC tiers from Defender's deployment guide: T1 triages and escalates, T2 remediates, T3 runs it all.
TIER_PERMISSIONS: dict[int, frozenset[Permission]] = {
    1: frozenset({Permission.VIEW_DATA_SECOPS, Permission.ALERTS_INVESTIGATION, Permission.VIEW_PLAN_REPORTS}),
    2: frozenset({
        Permission.VIEW_PLAN_REPORTS, Permission.VIEW_DATA_SECOPS, Permission.VIEW_DATA_TVM,
        Permission.ALERTS_INVESTIGATION,
        Permission.REMEDIATION_SECOPS, Permission.LIVE_RESPONSE_BASIC,
    }),
    3: frozenset({
        Permission.VIEW_PLAN_REPORTS, Permission.VIEW_DATA_SECOPS, Permission.VIEW_DATA_TVM,
        Permission.ALERTS_INVESTIGATION,
        Permission.REMEDIATION_SECOPS, Permission.TVM_EXCEPTION_HANDLING, Permission.TVM_REMEDIATION_HANDLING,
        Permission.TVM_APPLICATION_HANDLING, Permission.MANAGE_PORTAL_SETTINGS, Permission.MANAGE_SECURITY_SETTINGS,
        Permission.LIVE_RESPONSE_BASIC, Permission.LIVE_RESPONSE_ADVANCED,
    }),
}
