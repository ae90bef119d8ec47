"""Defender's application permissions (the roles an OAuth2 client-credentials app is granted) and what each opens.

A registered application holds roles by Defender's names, and a script written for Defender asks for the same
ones. Vigil's routes are guarded by its RBAC permissions, so each role maps to the permissions it needs; an app's
access is the union. The mapping is coarser than Defender's in one way, said here once: the ``Machine.*`` response
roles all map to "Active remediation actions", so an app granted ``Machine.Isolate`` may also start the other
remediation actions.
"""

from __future__ import annotations

from vigil.core.rbac import Permission as P

APP_ROLES: dict[str, frozenset[P]] = {
    "Alert.Read.All": frozenset({P.VIEW_DATA_SECOPS}),
    "Alert.ReadWrite.All": frozenset({P.VIEW_DATA_SECOPS, P.ALERTS_INVESTIGATION}),
    "Machine.Read.All": frozenset({P.VIEW_DATA_SECOPS}),
    "Machine.ReadWrite.All": frozenset({P.VIEW_DATA_SECOPS, P.ALERTS_INVESTIGATION}),
    "Machine.Isolate": frozenset({P.REMEDIATION_SECOPS}),
    "Machine.RestrictExecution": frozenset({P.REMEDIATION_SECOPS}),
    "Machine.Scan": frozenset({P.REMEDIATION_SECOPS}),
    "Machine.CollectForensics": frozenset({P.REMEDIATION_SECOPS}),
    "Machine.StopAndQuarantine": frozenset({P.REMEDIATION_SECOPS}),
    "Machine.Offboard": frozenset({P.MANAGE_SECURITY_SETTINGS}),
    "Machine.LiveResponse": frozenset({P.LIVE_RESPONSE_BASIC, P.LIVE_RESPONSE_ADVANCED}),
    "AdvancedQuery.Read.All": frozenset({P.VIEW_DATA_SECOPS}),
    "Ti.Read.All": frozenset({P.VIEW_DATA_SECOPS}),
    "Ti.ReadWrite": frozenset({P.VIEW_DATA_SECOPS, P.MANAGE_SECURITY_SETTINGS}),
    "Ti.ReadWrite.All": frozenset({P.VIEW_DATA_SECOPS, P.MANAGE_SECURITY_SETTINGS}),
    "Software.Read.All": frozenset({P.VIEW_DATA_TVM}),
    "Vulnerability.Read.All": frozenset({P.VIEW_DATA_TVM}),
    "SecurityRecommendation.Read.All": frozenset({P.VIEW_DATA_TVM}),
    "Score.Read.All": frozenset({P.VIEW_DATA_TVM}),
    "SecurityConfiguration.ReadWrite.All": frozenset({P.MANAGE_SECURITY_SETTINGS}),
}

# What a client asks for to get every role it was granted, as with Defender (the resource's ".default" scope).
DEFAULT_SCOPE_SUFFIX = ".default"


class UnknownAppRole(ValueError):
    def __init__(self, name: str, where: str) -> None:
        super().__init__(f"{where}: unknown application permission {name!r}; use one of: {', '.join(APP_ROLES)}")
        self.name, self.where = name, where


def parse_app_roles(names: list[str], where: str = "roles") -> frozenset[str]:
    for i, name in enumerate(names):
        if name not in APP_ROLES:
            raise UnknownAppRole(name, f"{where}[{i}]")
    return frozenset(names)


def permissions_for(roles: frozenset[str]) -> frozenset[P]:
    return frozenset().union(*(APP_ROLES[r] for r in roles)) if roles else frozenset()


def requested_roles(scope: str, granted: frozenset[str]) -> frozenset[str]:
    """The roles a token request's ``scope`` asks for: ``.../.default`` (or none) means all granted ones.

    Raises UnknownAppRole for a role that is not granted, naming it, so a client never silently gets less.
    """
    names = scope.split()
    if not names or any(n == DEFAULT_SCOPE_SUFFIX or n.endswith("/" + DEFAULT_SCOPE_SUFFIX) for n in names):
        return granted
    asked = frozenset(n.rsplit("/", 1)[-1] for n in names)
    for name in sorted(asked):
        if name not in granted:
            raise UnknownAppRole(name, "scope")
    return asked
