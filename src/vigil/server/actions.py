"""Response actions as a service: create, sign, approve, cancel, undo and record results, all audited."""

from __future__ import annotations

import secrets
import uuid
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from vigil.app.actions import SigningUnavailable
from vigil.app.ports import ActionRequest, AuditRecord
from vigil.config import Settings
from vigil.core.actions import (
    COMMAND_LIFETIME,
    ActionRuleError,
    ActionStatus,
    ActionType,
    Approval,
    InvalidTransition,
    MachineAction,
    check_four_eyes,
    undo_of,
    validate_comment,
)
from vigil.deploy.signing import SigningKeyMissing, load_key
from vigil.server.scope import username_of
from vigil.store import actions as action_store
from vigil.store import audit
from vigil.store.audit import Change
from vigil.store.sql import ActionIssuerFn
from vigil.wire import ActionCommand, ActionResult, sign_command

ARTIFACT_TYPES = frozenset({ActionType.COLLECT_INVESTIGATION_PACKAGE, ActionType.LIVE_RESPONSE})


def artifact_path(settings: Settings, action_id: str) -> Path:
    return settings.data_dir / "artifacts" / f"{action_id}.bin"


def signed_command(settings: Settings, action: MachineAction, now: datetime) -> tuple[dict[str, Any], datetime]:
    """The signed envelope for ``action``, valid from now for its type's lifetime."""
    expires = now + COMMAND_LIFETIME[action.type]
    command = ActionCommand(
        action_id=action.id, device_id=action.device_id, type=action.type.value, parameters=action.parameters,
        issued_at=now, expires_at=expires, nonce=secrets.token_hex(16),
    )
    return sign_command(load_key(settings), command).model_dump(mode="json"), expires


def signing_issuer(settings: Settings) -> ActionIssuerFn:
    """The store's action issuer on this server's signing key: what the API, the portal and the CLI record with."""

    def issue(conn: sa.Connection, req: ActionRequest, who: AuditRecord, now: datetime) -> MachineAction:
        try:
            return create(
                conn, settings, Change(who.actor, "", "", "", source_ip=who.source_ip), device_id=req.device_id,
                action_type=req.type, parameters=req.parameters, comment=req.comment, now=now,
                require_approval=req.require_approval,
            )
        except SigningKeyMissing as e:
            raise SigningUnavailable(str(e)) from None

    return issue


def create(
    conn: sa.Connection, settings: Settings, who: Change, *, device_id: str, action_type: ActionType,
    parameters: dict[str, Any], comment: str | None, now: datetime, require_approval: bool = False,
    undo: str | None = None, session_id: int | None = None,
) -> MachineAction:
    """Record a new action and, unless it waits for approval, sign it for the device at once.

    ``who`` carries the requestor and source address; its action and target are filled in here.
    """
    text = validate_comment(comment)
    action = MachineAction(
        id=str(uuid.uuid4()), device_id=device_id, type=action_type, status=ActionStatus.PENDING,
        approval=Approval.PENDING if require_approval else Approval.NOT_REQUIRED, requestor=who.actor,
        comment=text, parameters=parameters, created_at=now, updated_at=now,
        expires_at=now + COMMAND_LIFETIME[action_type], related_file_sha256=parameters.get("Sha256"),
        undo_of=undo, session_id=session_id,
    )
    command = None
    if not require_approval:
        command, expires = signed_command(settings, action, now)
        action = replace(action, expires_at=expires)
    action_store.insert(conn, action, command)
    _audit(conn, who, "machineaction.create", action, now, after={
        "type": action.type.value, "machineId": device_id, "parameters": parameters,
        "approval": action.approval.value, "undoOf": undo,
    }, reason=text)
    return action


def decide(
    conn: sa.Connection, settings: Settings, who: Change, action_id: str, approve: bool, comment: str | None,
    now: datetime,
) -> MachineAction:
    """Approve (sign and release) or reject (cancel) an action waiting for approval."""
    text = validate_comment(comment)
    action = action_store.get(conn, action_id)
    if action.approval is not Approval.PENDING or action.status is not ActionStatus.PENDING:
        raise ActionRuleError(f"action {action_id} is not waiting for approval", "ActionIds")
    if approve:
        # Rejecting one's own request is harmless (it only cancels); approving it would defeat the hold.
        check_four_eyes(action_id, username_of(action.requestor), username_of(who.actor))
    command, expires = (signed_command(settings, action, now) if approve else (None, None))
    decided = action_store.decide(conn, action_id, approve, who.actor, text, now, command, expires)
    _audit(conn, who, "machineaction.approve" if approve else "machineaction.reject", decided, now,
           before={"approval": action.approval.value}, after={"approval": decided.approval.value}, reason=text)
    return decided


def cancel(conn: sa.Connection, who: Change, action_id: str, comment: str | None, now: datetime) -> MachineAction:
    """Cancel an action the device has not picked up yet (Defender's "Cancel machine action")."""
    text = validate_comment(comment)
    action = action_store.get(conn, action_id)
    if action.status is not ActionStatus.PENDING or action.delivered_at is not None:
        raise ActionRuleError(f"only an action not yet sent to the device can be canceled; this one is "
                              f"{action.status}{' and was sent' if action.delivered_at else ''}", "status")
    done = action_store.set_status(conn, action_id, ActionStatus.CANCELED, now, message=f"canceled: {text}")
    _audit(conn, who, "machineaction.cancel", done, now, before={"status": action.status.value},
           after={"status": done.status.value}, reason=text)
    return done


def undo(
    conn: sa.Connection, settings: Settings, who: Change, action_id: str, comment: str | None, now: datetime
) -> MachineAction:
    original = action_store.get(conn, action_id)
    kind, params = undo_of(original.type, original.id, original.status)
    return create(conn, settings, who, device_id=original.device_id, action_type=kind, parameters=params,
                  comment=comment, now=now, undo=original.id)


def record_result(
    conn: sa.Connection, device_id: str, action_id: str, result: ActionResult, now: datetime
) -> MachineAction:
    """A device's report on its own action; raises ActionNotFound for any other device's action."""
    action = action_store.get(conn, action_id)
    if action.device_id != device_id:
        raise action_store.ActionNotFound(f"no machine action with id {action_id!r} for this device")
    status = ActionStatus(result.status)
    try:
        done = action_store.set_status(conn, action_id, status, now, message=result.message,
                                       refused=result.refused, output=result.output or None)
    except InvalidTransition:
        # A late or repeated report (e.g. a refused replay of a finished action) leaves the status alone,
        # but it is still written to the audit log, where an analyst can see it.
        done = action
    device = Change(f"device {device_id}", "", "", "")
    _audit(conn, device, "machineaction.result", done, now, before={"status": action.status.value},
           after={"reported": result.status, "status": done.status.value, "refused": result.refused,
                  "message": result.message[:500]})
    return done


def audit_refused_approval(conn: sa.Connection, who: Change, action_id: str, reason: str, now: datetime) -> None:
    """Record a refused approval; the caller commits it apart from the refused (rolled-back) decision."""
    audit.append(conn, Change(who.actor, "machineaction.approve_refused", "machine_action", action_id,
                              source_ip=who.source_ip, reason=reason), now)


def _audit(conn: sa.Connection, who: Change, what: str, action: MachineAction, now: datetime, **kw: Any) -> None:
    audit.append(conn, Change(who.actor, what, "machine_action", action.id, source_ip=who.source_ip, **kw), now)
