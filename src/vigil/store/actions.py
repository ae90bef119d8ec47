"""Machine actions, live response sessions and the script library: rows in, domain values out."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from vigil.core.actions import (
    IN_PROGRESS_GRACE,
    TERMINAL,
    ActionStatus,
    ActionType,
    Approval,
    MachineAction,
    transition,
)
from vigil.store.devices import aware
from vigil.store.schema import live_response_library, live_response_sessions, machine_actions

REDELIVER_AFTER = timedelta(seconds=30)


class ActionNotFound(LookupError):
    pass


def _action(r: Any) -> MachineAction:
    return MachineAction(
        id=r.id, device_id=r.device_id, type=ActionType(r.type), status=ActionStatus(r.status),
        approval=Approval(r.approval), requestor=r.requestor, comment=r.requestor_comment,
        parameters=dict(r.parameters or {}), created_at=aware(r.created_at), updated_at=aware(r.updated_at),
        expires_at=aware(r.expires_at), delivered_at=aware(r.delivered_at) if r.delivered_at else None,
        decided_by=r.decided_by, decision_comment=r.decision_comment, result_message=r.result_message or "",
        result_output=r.result_output, refused=r.refused, related_file_sha256=r.related_file_sha256,
        artifact_sha256=r.artifact_sha256, artifact_size=r.artifact_size, undo_of=r.undo_of,
        session_id=r.session_id,
    )


def insert(conn: sa.Connection, action: MachineAction, command: dict[str, Any] | None) -> None:
    conn.execute(machine_actions.insert().values(
        id=action.id, device_id=action.device_id, type=action.type.value, status=action.status.value,
        approval=action.approval.value, requestor=action.requestor, requestor_comment=action.comment,
        parameters=action.parameters, command=command, created_at=action.created_at,
        updated_at=action.updated_at, expires_at=action.expires_at, result_message=action.result_message,
        related_file_sha256=action.related_file_sha256, undo_of=action.undo_of, session_id=action.session_id,
    ))


def get(conn: sa.Connection, action_id: str) -> MachineAction:
    row = conn.execute(sa.select(machine_actions).where(machine_actions.c.id == action_id)).first()
    if row is None:
        raise ActionNotFound(f"no machine action with id {action_id!r}")
    return _action(row)


@dataclass(frozen=True)
class ActionFilter:
    device_id: str | None = None
    types: Sequence[str] = ()
    statuses: Sequence[str] = ()
    since: datetime | None = None
    until: datetime | None = None
    pending_approval: bool | None = None
    session_id: int | None = None


def query(
    conn: sa.Connection, f: ActionFilter, scope: sa.ColumnElement[bool] | None = None, limit: int = 1000
) -> list[MachineAction]:
    c = machine_actions.c
    q = sa.select(machine_actions)
    if scope is not None:
        q = q.where(scope)
    if f.device_id:
        q = q.where(c.device_id == f.device_id)
    if f.types:
        q = q.where(c.type.in_(list(f.types)))
    if f.statuses:
        q = q.where(c.status.in_(list(f.statuses)))
    if f.since:
        q = q.where(c.created_at >= f.since)
    if f.until:
        q = q.where(c.created_at < f.until)
    if f.pending_approval is not None:
        q = q.where((c.approval == Approval.PENDING.value) if f.pending_approval
                    else (c.approval != Approval.PENDING.value))
    if f.session_id is not None:
        q = q.where(c.session_id == f.session_id)
    rows = conn.execute(q.order_by(c.created_at.desc(), c.id).limit(limit))
    return [_action(r) for r in rows]


def take_pending(conn: sa.Connection, device_id: str, now: datetime, limit: int = 20) -> list[dict[str, Any]]:
    """Signed commands waiting for ``device_id``, marked delivered.

    A command the device has not acknowledged (InProgress) within REDELIVER_AFTER is sent again: an
    answer lost in transit must not strand it. The agent's replay check makes a second copy harmless.
    """
    c = machine_actions.c
    undelivered = sa.or_(c.delivered_at.is_(None), c.delivered_at < now - REDELIVER_AFTER)
    rows = conn.execute(
        sa.select(c.id, c.command, c.delivered_at).where(
            c.device_id == device_id, c.status == ActionStatus.PENDING.value, c.command.is_not(None),
            undelivered, c.expires_at > now,
        ).order_by(c.created_at).limit(limit)
    ).all()
    out = []
    for r in rows:
        # Guarded on the value read: with two server processes polling, only one hands each command out.
        same = c.delivered_at.is_(None) if r.delivered_at is None else c.delivered_at == r.delivered_at
        done = conn.execute(machine_actions.update().where(c.id == r.id, same)
                            .values(delivered_at=now, updated_at=now))
        if done.rowcount:
            out.append(dict(r.command))
    return out


def expire_overdue(conn: sa.Connection, now: datetime) -> list[str]:
    """Pending actions past their command's expiry, and accepted ones past the grace, become TimeOut."""
    c = machine_actions.c
    overdue = sa.or_(
        sa.and_(c.status == ActionStatus.PENDING.value, c.expires_at <= now),
        sa.and_(c.status == ActionStatus.IN_PROGRESS.value, c.expires_at <= now - IN_PROGRESS_GRACE),
    )
    ids = [r.id for r in conn.execute(sa.select(c.id).where(overdue))]
    if ids:
        conn.execute(machine_actions.update().where(c.id.in_(ids), overdue).values(
            status=ActionStatus.TIMEOUT.value, updated_at=now,
            result_message="the device did not complete the action before it expired"))
    return ids


def set_status(
    conn: sa.Connection, action_id: str, status: ActionStatus, now: datetime, *, message: str | None = None,
    refused: str | None = None, output: dict[str, Any] | None = None,
) -> MachineAction:
    """Apply one status change under the transition rules (raises InvalidTransition)."""
    current = get(conn, action_id)
    new = transition(current.status, status)
    values: dict[str, Any] = {"status": new.value, "updated_at": now}
    if message is not None:
        values["result_message"] = message
    if refused is not None:
        values["refused"] = refused
    if output is not None:
        values["result_output"] = output
    # Guarded on the status read, so two concurrent reports cannot both apply.
    res = conn.execute(machine_actions.update().where(
        machine_actions.c.id == action_id, machine_actions.c.status == current.status.value).values(**values))
    if not res.rowcount:
        return set_status(conn, action_id, status, now, message=message, refused=refused, output=output)
    return get(conn, action_id)


def decide(
    conn: sa.Connection, action_id: str, approve: bool, by: str, comment: str, now: datetime,
    command: dict[str, Any] | None, expires_at: datetime | None,
) -> MachineAction:
    values: dict[str, Any] = {
        "approval": (Approval.APPROVED if approve else Approval.REJECTED).value, "decided_by": by,
        "decision_comment": comment, "updated_at": now,
    }
    if approve:
        values.update(command=command, expires_at=expires_at)
    else:
        values.update(status=ActionStatus.CANCELED.value, result_message=f"rejected by {by}: {comment}")
    res = conn.execute(machine_actions.update().where(
        machine_actions.c.id == action_id, machine_actions.c.approval == Approval.PENDING.value,
        machine_actions.c.status == ActionStatus.PENDING.value).values(**values))
    if not res.rowcount:
        raise ValueError(f"action {action_id} is not waiting for approval")
    return get(conn, action_id)


def set_artifact(conn: sa.Connection, action_id: str, sha256: str, size: int, now: datetime) -> None:
    conn.execute(machine_actions.update().where(machine_actions.c.id == action_id).values(
        artifact_sha256=sha256, artifact_size=size, updated_at=now))


def is_terminal(action: MachineAction) -> bool:
    return action.status in TERMINAL


# -- live response sessions and library ------------------------------------------------------------

@dataclass(frozen=True)
class LiveSession:
    id: int
    device_id: str
    username: str
    started_at: datetime
    ended_at: datetime | None


def _session(r: Any) -> LiveSession:
    return LiveSession(r.id, r.device_id, r.username, aware(r.started_at), aware(r.ended_at) if r.ended_at else None)


def active_sessions(conn: sa.Connection, *, device_id: str | None = None, username: str | None = None
                    ) -> list[LiveSession]:
    c = live_response_sessions.c
    q = sa.select(live_response_sessions).where(c.ended_at.is_(None))
    if device_id:
        q = q.where(c.device_id == device_id)
    if username:
        q = q.where(c.username == username)
    return [_session(r) for r in conn.execute(q)]


def open_session(conn: sa.Connection, device_id: str, username: str, now: datetime) -> LiveSession:
    res = conn.execute(live_response_sessions.insert().values(device_id=device_id, username=username, started_at=now))
    return get_session(conn, int(res.inserted_primary_key[0]))  # type: ignore[index]


def get_session(conn: sa.Connection, session_id: int) -> LiveSession:
    row = conn.execute(sa.select(live_response_sessions).where(live_response_sessions.c.id == session_id)).first()
    if row is None:
        raise ActionNotFound(f"no live response session {session_id}")
    return _session(row)


def end_session(conn: sa.Connection, session_id: int, now: datetime) -> None:
    conn.execute(live_response_sessions.update().where(
        live_response_sessions.c.id == session_id, live_response_sessions.c.ended_at.is_(None)).values(ended_at=now))


@dataclass(frozen=True)
class LibraryFile:
    name: str
    sha256: str
    size: int
    description: str
    uploaded_by: str
    uploaded_at: datetime


def put_library_file(conn: sa.Connection, name: str, content: bytes, description: str, by: str,
                     now: datetime) -> LibraryFile:
    t = live_response_library
    values = {"sha256": hashlib.sha256(content).hexdigest(), "size": len(content), "content": content,
              "description": description, "uploaded_by": by, "uploaded_at": now}
    if conn.execute(sa.select(t.c.name).where(t.c.name == name)).first():
        conn.execute(t.update().where(t.c.name == name).values(**values))
    else:
        conn.execute(t.insert().values(name=name, **values))
    return LibraryFile(name, str(values["sha256"]), len(content), description, by, now)


def library(conn: sa.Connection) -> list[LibraryFile]:
    t = live_response_library
    rows = conn.execute(sa.select(t.c.name, t.c.sha256, t.c.size, t.c.description, t.c.uploaded_by,
                                  t.c.uploaded_at).order_by(t.c.name))
    return [LibraryFile(r.name, r.sha256, r.size, r.description, r.uploaded_by, aware(r.uploaded_at)) for r in rows]


def library_content(conn: sa.Connection, name: str) -> tuple[bytes, str]:
    t = live_response_library
    row = conn.execute(sa.select(t.c.content, t.c.sha256).where(t.c.name == name)).first()
    if row is None:
        raise ActionNotFound(f"no library file named {name!r}")
    return bytes(row.content), str(row.sha256)
