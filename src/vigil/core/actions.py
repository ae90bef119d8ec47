"""Machine actions: Defender's types and statuses, their parameters, transitions and undo rules."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any


class ActionType(StrEnum):
    ISOLATE = "Isolate"
    UNISOLATE = "Unisolate"
    COLLECT_INVESTIGATION_PACKAGE = "CollectInvestigationPackage"
    RESTRICT_CODE_EXECUTION = "RestrictCodeExecution"
    UNRESTRICT_CODE_EXECUTION = "UnrestrictCodeExecution"
    RUN_ANTIVIRUS_SCAN = "RunAntiVirusScan"
    STOP_AND_QUARANTINE_FILE = "StopAndQuarantineFile"
    RESTORE_QUARANTINED_FILE = "RestoreQuarantinedFile"
    KILL_PROCESS = "KillProcess"
    LIVE_RESPONSE = "LiveResponse"
    # Vigil's own: the device's ASR policy and indicators (vigil.asr.bundle), signed like any command.
    APPLY_PROTECTION_POLICY = "ApplyProtectionPolicy"
    # Vigil's remediations beyond Defender's device actions (automated investigations propose them), each undoable.
    REMOVE_PERSISTENCE_ENTRY = "RemovePersistenceEntry"
    RESTORE_PERSISTENCE_ENTRY = "RestorePersistenceEntry"
    DISABLE_LOCAL_USER = "DisableLocalUser"
    ENABLE_LOCAL_USER = "EnableLocalUser"
    STOP_AND_DISABLE_SERVICE = "StopAndDisableService"
    START_AND_ENABLE_SERVICE = "StartAndEnableService"


class ActionStatus(StrEnum):
    PENDING = "Pending"
    IN_PROGRESS = "InProgress"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    TIMEOUT = "TimeOut"
    CANCELED = "Canceled"


class Approval(StrEnum):
    """Whether a second analyst must approve the action before it is signed and sent."""

    NOT_REQUIRED = "NotRequired"
    PENDING = "PendingApproval"
    APPROVED = "Approved"
    REJECTED = "Rejected"


TERMINAL = frozenset({ActionStatus.SUCCEEDED, ActionStatus.FAILED, ActionStatus.TIMEOUT, ActionStatus.CANCELED})
_NEXT: dict[ActionStatus, frozenset[ActionStatus]] = {
    ActionStatus.PENDING: frozenset(ActionStatus) - {ActionStatus.PENDING},
    ActionStatus.IN_PROGRESS: frozenset(
        {ActionStatus.SUCCEEDED, ActionStatus.FAILED, ActionStatus.TIMEOUT, ActionStatus.CANCELED}
    ),
}

# How long a signed command stays valid; past it the agent refuses it and the server times it out.
COMMAND_LIFETIME: dict[ActionType, timedelta] = {t: timedelta(hours=1) for t in ActionType}
COMMAND_LIFETIME[ActionType.LIVE_RESPONSE] = timedelta(minutes=10)

# The action that undoes each undoable action (quarantine is undone by restoring that quarantine).
UNDO: dict[ActionType, ActionType] = {
    ActionType.ISOLATE: ActionType.UNISOLATE,
    ActionType.RESTRICT_CODE_EXECUTION: ActionType.UNRESTRICT_CODE_EXECUTION,
    ActionType.STOP_AND_QUARANTINE_FILE: ActionType.RESTORE_QUARANTINED_FILE,
    ActionType.REMOVE_PERSISTENCE_ENTRY: ActionType.RESTORE_PERSISTENCE_ENTRY,
    ActionType.DISABLE_LOCAL_USER: ActionType.ENABLE_LOCAL_USER,
    ActionType.STOP_AND_DISABLE_SERVICE: ActionType.START_AND_ENABLE_SERVICE,
}
# These undo actions name the action they reverse; the agent keeps what that action changed under its id.
_UNDO_BY_ID = frozenset({ActionType.RESTORE_PERSISTENCE_ENTRY, ActionType.ENABLE_LOCAL_USER,
                         ActionType.START_AND_ENABLE_SERVICE})


class ActionRuleError(ValueError):
    """A request the action rules refuse; ``field`` names the offending input."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class InvalidTransition(ActionRuleError):
    pass


class SelfApproval(ActionRuleError):
    """The four-eyes rule: an action held for approval must be approved by someone other than its requestor."""


def check_four_eyes(action_id: str, requestor: str, approver: str) -> None:
    """Refuse approval by the user who requested the action (``requestor``/``approver`` are usernames)."""
    if requestor == approver:
        raise SelfApproval(f"four-eyes rule: {approver} requested action {action_id} and cannot also approve it; "
                           "another analyst with the remediation permission must approve it", "ActionIds")


def transition(current: ActionStatus, new: ActionStatus) -> ActionStatus:
    """The status after ``new`` is reported; terminal statuses never change again."""
    if new == current and current not in TERMINAL:
        return current
    if new not in _NEXT.get(current, frozenset()):
        raise InvalidTransition(f"a {current} action cannot become {new}", "status")
    return new


def undo_of(action_type: ActionType, action_id: str, status: ActionStatus) -> tuple[ActionType, dict[str, Any]]:
    """The action (type and parameters) that reverses a succeeded action."""
    if action_type not in UNDO:
        raise ActionRuleError(f"{action_type} cannot be undone", "type")
    if status is not ActionStatus.SUCCEEDED:
        raise ActionRuleError(f"only a succeeded action can be undone; this one is {status}", "status")
    params: dict[str, Any] = {}
    if action_type is ActionType.STOP_AND_QUARANTINE_FILE:
        params["QuarantineId"] = action_id
    elif UNDO[action_type] in _UNDO_BY_ID:
        params["UndoOf"] = action_id
    return UNDO[action_type], params


@dataclass(frozen=True)
class AllowEntry:
    """One destination a Selective isolation keeps open: a network and optionally one TCP/UDP port."""

    network: ipaddress.IPv4Network | ipaddress.IPv6Network
    port: int | None = None

    def __str__(self) -> str:
        net = str(self.network.network_address) if self.network.prefixlen == self.network.max_prefixlen \
            else str(self.network)
        if self.port is None:
            return net
        return f"[{net}]:{self.port}" if self.network.version == 6 else f"{net}:{self.port}"


_V6_PORT = re.compile(r"^\[([^\]]+)\]:(\d+)$")
_V4_PORT = re.compile(r"^([0-9./]+):(\d+)$")


def parse_allow_entry(text: str, where: str = "AllowList") -> AllowEntry:
    """``192.0.2.10``, ``198.51.100.0/24``, ``192.0.2.10:443`` or ``[2001:db8::1]:443``."""
    text = text.strip()
    m = _V6_PORT.match(text) or _V4_PORT.match(text)
    addr, port = (m.group(1), int(m.group(2))) if m else (text, None)
    try:
        net = ipaddress.ip_network(addr, strict=False)
    except ValueError:
        raise ActionRuleError(f"{where}: {text!r} is not an address, network or address:port", where) from None
    if port is not None and not 1 <= port <= 65535:
        raise ActionRuleError(f"{where}: port {port} is out of range", where)
    return AllowEntry(net, port)


_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_ISOLATION_TYPES = ("Full", "Selective")
_SCAN_TYPES = ("Quick", "Full")


def _absolute(value: Any, field: str) -> str:
    if not isinstance(value, str) or not value.startswith("/") or "\x00" in value or len(value) > 4096:
        raise ActionRuleError(f"{field} must be an absolute path", field)
    return value


def _validate_isolate(p: Mapping[str, Any]) -> dict[str, Any]:
    kind = p.get("IsolationType", "Full")
    if kind not in _ISOLATION_TYPES:
        raise ActionRuleError(f"IsolationType must be Full or Selective, not {kind!r}", "IsolationType")
    allow = p.get("AllowList") or []
    if not isinstance(allow, list) or len(allow) > 64:
        raise ActionRuleError("AllowList must be a list of at most 64 entries", "AllowList")
    if allow and kind == "Full":
        raise ActionRuleError("an AllowList needs IsolationType Selective", "AllowList")
    entries = [str(parse_allow_entry(str(a), f"AllowList[{i}]")) for i, a in enumerate(allow)]
    return {"IsolationType": kind, "AllowList": entries}


def _validate_quarantine(p: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    sha = p.get("Sha256")
    if sha is not None:
        if not isinstance(sha, str) or not _SHA256.match(sha.lower()):
            raise ActionRuleError("Sha256 must be 64 hexadecimal characters", "Sha256")
        out["Sha256"] = sha.lower()
    if p.get("Path") is not None:
        out["Path"] = _absolute(p["Path"], "Path")
    if not out:
        raise ActionRuleError("give the file's Sha256, its Path, or both", "Sha256")
    keep = p.get("KeepPersistence")
    if keep is not None:
        # Persistence files the quarantine leaves alone: an investigation removes them by their own action.
        if not isinstance(keep, list) or len(keep) > 64:
            raise ActionRuleError("KeepPersistence must be a list of at most 64 absolute paths", "KeepPersistence")
        out["KeepPersistence"] = [_absolute(v, f"KeepPersistence[{i}]") for i, v in enumerate(keep)]
    return out


def _validate_kill(p: Mapping[str, Any]) -> dict[str, Any]:
    pid = p.get("ProcessId")
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 1:
        raise ActionRuleError("ProcessId must be a process id above 1", "ProcessId")
    created = p.get("ProcessCreationTime")
    if not isinstance(created, str):
        # Without the start time a recycled pid could be hit; Defender's timeline always has it.
        raise ActionRuleError("ProcessCreationTime (ISO 8601) is required", "ProcessCreationTime")
    try:
        datetime.fromisoformat(created.replace("Z", "+00:00"))
    except ValueError:
        raise ActionRuleError("ProcessCreationTime is not an ISO 8601 time", "ProcessCreationTime") from None
    return {"ProcessId": pid, "ProcessCreationTime": created}


def _validate_restrict(p: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in ("Paths", "AllowPrefixes"):
        value = p.get(key)
        if value is None:
            continue
        if not isinstance(value, list) or not value or len(value) > 64:
            raise ActionRuleError(f"{key} must be a list of 1 to 64 absolute paths", key)
        out[key] = [_absolute(v, f"{key}[{i}]") for i, v in enumerate(value)]
    return out


def _validate_scan(p: Mapping[str, Any]) -> dict[str, Any]:
    kind = p.get("ScanType", "Quick")
    if kind not in _SCAN_TYPES:
        raise ActionRuleError(f"ScanType must be Quick or Full, not {kind!r}", "ScanType")
    return {"ScanType": kind}


def _validate_restore(p: Mapping[str, Any]) -> dict[str, Any]:
    qid = p.get("QuarantineId")
    if not isinstance(qid, str) or not re.fullmatch(r"[0-9a-f-]{8,40}", qid):
        raise ActionRuleError("QuarantineId must be the id of the StopAndQuarantineFile action", "QuarantineId")
    return {"QuarantineId": qid}


def _validate_undo_of(p: Mapping[str, Any]) -> dict[str, Any]:
    ref = p.get("UndoOf")
    if not isinstance(ref, str) or not re.fullmatch(r"[0-9a-f-]{8,40}", ref):
        raise ActionRuleError("UndoOf must be the id of the action this one undoes", "UndoOf")
    return {"UndoOf": ref}


def _one_line(value: Any, field: str) -> str:
    if not isinstance(value, str) or not value.strip() or "\n" in value or "\x00" in value or len(value) > 4096:
        raise ActionRuleError(f"{field} must be one non-empty line of at most 4096 characters", field)
    return value


def _validate_remove_persistence(p: Mapping[str, Any]) -> dict[str, Any]:
    lines, match = p.get("Lines"), p.get("Match")
    if p.get("Path") is None and match is None:
        raise ActionRuleError("give the entry's Path, or a Match to look for in every persistence file", "Path")
    out: dict[str, Any] = {} if p.get("Path") is None else {"Path": _absolute(p.get("Path"), "Path")}
    if lines is not None and match is not None:
        raise ActionRuleError("give Lines or Match, not both", "Lines")
    if lines is not None and "Path" not in out:
        raise ActionRuleError("Lines need the Path of their file", "Path")
    if lines is not None:
        if not isinstance(lines, list) or not lines or len(lines) > 64:
            raise ActionRuleError("Lines must be a list of 1 to 64 lines", "Lines")
        out["Lines"] = [_one_line(v, f"Lines[{i}]") for i, v in enumerate(lines)]
    if match is not None:
        out["Match"] = _one_line(match, "Match")
    return out


# shadow-utils' default NAME_REGEX, with the trailing $ of machine accounts.
_ACCOUNT = re.compile(r"^[a-z_][a-z0-9_.-]{0,31}\$?$")


def _validate_disable_user(p: Mapping[str, Any]) -> dict[str, Any]:
    name = p.get("AccountName")
    if not isinstance(name, str) or not _ACCOUNT.match(name):
        raise ActionRuleError("AccountName must be a local account name (lower case, at most 32 characters)",
                              "AccountName")
    if name == "root":
        raise ActionRuleError("the root account is never disabled: it would lock the device's administrators out",
                              "AccountName")
    return {"AccountName": name}


_UNIT = re.compile(r"^[A-Za-z0-9:_.\\@-]{1,200}\.(service|timer|socket|path)$")


def _validate_stop_service(p: Mapping[str, Any]) -> dict[str, Any]:
    unit = p.get("Unit")
    if not isinstance(unit, str) or not _UNIT.match(unit) or unit.startswith("."):
        raise ActionRuleError("Unit must be a systemd unit name such as evil.service (.service, .timer, .socket or "
                              ".path)", "Unit")
    return {"Unit": unit}


def _none(_: Mapping[str, Any]) -> dict[str, Any]:
    return {}


_VALIDATORS = {
    ActionType.ISOLATE: _validate_isolate,
    ActionType.UNISOLATE: _none,
    ActionType.COLLECT_INVESTIGATION_PACKAGE: _none,
    ActionType.RESTRICT_CODE_EXECUTION: _validate_restrict,
    ActionType.UNRESTRICT_CODE_EXECUTION: _none,
    ActionType.RUN_ANTIVIRUS_SCAN: _validate_scan,
    ActionType.STOP_AND_QUARANTINE_FILE: _validate_quarantine,
    ActionType.RESTORE_QUARANTINED_FILE: _validate_restore,
    ActionType.KILL_PROCESS: _validate_kill,
    ActionType.REMOVE_PERSISTENCE_ENTRY: _validate_remove_persistence,
    ActionType.RESTORE_PERSISTENCE_ENTRY: _validate_undo_of,
    ActionType.DISABLE_LOCAL_USER: _validate_disable_user,
    ActionType.ENABLE_LOCAL_USER: _validate_undo_of,
    ActionType.STOP_AND_DISABLE_SERVICE: _validate_stop_service,
    ActionType.START_AND_ENABLE_SERVICE: _validate_undo_of,
}


def validate_parameters(action_type: ActionType, params: Mapping[str, Any]) -> dict[str, Any]:
    """The normalized parameters of one action; live response verbs are checked by ``liveresponse``."""
    if action_type is ActionType.LIVE_RESPONSE:
        raise ActionRuleError("live response commands are validated by vigil.core.liveresponse", "type")
    return _VALIDATORS[action_type](params)


def validate_comment(comment: str | None) -> str:
    """Defender requires a comment on every response action; so do we."""
    text = (comment or "").strip()
    if not text:
        raise ActionRuleError("a comment is required for every response action", "Comment")
    if len(text) > 4000:
        raise ActionRuleError("the comment is over 4000 characters", "Comment")
    return text


@dataclass(frozen=True)
class MachineAction:
    """One response action as the action center tracks it."""

    id: str
    device_id: str
    type: ActionType
    status: ActionStatus
    approval: Approval
    requestor: str
    comment: str
    parameters: dict[str, Any]
    created_at: datetime
    updated_at: datetime
    expires_at: datetime
    delivered_at: datetime | None = None
    decided_by: str | None = None
    decision_comment: str | None = None
    result_message: str = ""
    result_output: dict[str, Any] | None = None
    refused: str | None = None
    related_file_sha256: str | None = None
    artifact_sha256: str | None = None
    artifact_size: int | None = None
    undo_of: str | None = None
    session_id: int | None = None

    @property
    def undoable(self) -> bool:
        return self.type in UNDO and self.status is ActionStatus.SUCCEEDED


# An accepted action may run this long past its command's expiry before the server gives up on it.
IN_PROGRESS_GRACE = timedelta(hours=1)
