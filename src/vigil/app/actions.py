"""Response actions on a device: the permission, the device's visibility, validation, then the signing path."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from vigil.app.devices import visible
from vigil.app.errors import InvalidInput, NotConfigured
from vigil.app.ports import ActionRequest, AuditRecord, Store
from vigil.app.principal import Principal
from vigil.core.actions import ActionRuleError, ActionType, MachineAction, validate_comment, validate_parameters
from vigil.core.clock import Clock
from vigil.core.rbac import Permission
from vigil.store.errors import NotConfiguredIssuer

# Defender puts collecting a package and scanning under "Alerts investigation", not remediation.
PERMISSION: dict[ActionType, Permission] = {
    ActionType.COLLECT_INVESTIGATION_PACKAGE: Permission.ALERTS_INVESTIGATION,
    ActionType.RUN_ANTIVIRUS_SCAN: Permission.ALERTS_INVESTIGATION,
}


class SigningUnavailable(Exception):
    """The issuer could not sign (no signing key); adapters' issuers raise it, the service maps it."""


def start(
    store: Store,
    clock: Clock,
    who: Principal,
    device_id: str,
    action_type: ActionType,
    parameters: Mapping[str, Any],
    comment: str | None,
    require_approval: bool = False,
) -> MachineAction:
    """Record and sign one action for a device the caller may see; the issuer writes its audit record."""
    who.require(PERMISSION.get(action_type, Permission.REMEDIATION_SECOPS))
    now = clock.now()
    try:
        with store.begin() as uow:
            visible(uow, who, device_id)  # an unseen device is unknown, whatever else is wrong
            clean = validate_parameters(action_type, parameters)
            text = validate_comment(comment)
            return uow.actions.issue(
                ActionRequest(device_id, action_type, clean, text, require_approval),
                AuditRecord(who.actor, "", "", "", source_ip=who.source_ip),
                now,
            )
    except ActionRuleError as e:
        raise InvalidInput(str(e), field=e.field) from None
    except (SigningUnavailable, NotConfiguredIssuer) as e:
        raise NotConfigured(str(e)) from None


def isolate(
    store: Store,
    clock: Clock,
    who: Principal,
    device_id: str,
    comment: str | None,
    isolation_type: str = "Full",
    allow_list: list[str] | None = None,
    require_approval: bool = False,
) -> MachineAction:
    return start(
        store,
        clock,
        who,
        device_id,
        ActionType.ISOLATE,
        {"IsolationType": isolation_type, "AllowList": allow_list or []},
        comment,
        require_approval,
    )
