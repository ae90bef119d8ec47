"""A device's reported identity changes: listed for analysts, accepted or rejected by administrators."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field

from vigil.core.identity import IdentityChange
from vigil.core.rbac import Permission
from vigil.server.api._json import iso
from vigil.server.api.machines import get_machine
from vigil.server.auth import Principal, requires, services
from vigil.server.errors import APIError
from vigil.server.scope import change
from vigil.store import identity as identity_store

router = APIRouter()


def change_json(c: IdentityChange) -> dict[str, Any]:
    return {
        "id": c.id, "machineId": c.device_id, "status": c.status.value,
        "before": c.before.as_json(), "after": c.after.as_json(), "changed": list(c.before.changed_fields(c.after)),
        "detectedAt": iso(c.detected_at), "lastReportedAt": iso(c.last_reported_at), "reports": c.reports,
        "revision": c.revision, "decidedBy": c.decided_by, "decidedAt": iso(c.decided_at), "comment": c.comment,
    }


def identity_changes(request: Request, machine_id: str) -> list[dict[str, Any]]:
    get_machine(request, machine_id)  # 404 unless the caller may see the device
    with services(request).engine.connect() as conn:
        return [change_json(c) for c in identity_store.list_changes(conn, machine_id)]


@router.get("/machines/{machine_id}/identityChanges")
def list_identity_changes(
    machine_id: str, request: Request, _: Principal = requires(Permission.VIEW_DATA_SECOPS)
) -> dict[str, Any]:
    return {"value": identity_changes(request, machine_id)}


class DecisionBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    # The revision the administrator reviewed; a newer report from the device makes the decision stale.
    Revision: int = Field(ge=1)
    Comment: str | None = Field(default=None, max_length=1000)


def decide(request: Request, machine_id: str, change_id: int, accept: bool, body: DecisionBody) -> dict[str, Any]:
    svc = services(request)
    get_machine(request, machine_id)
    now = svc.clock.now()
    who = change(request, "", "device", machine_id, reason=body.Comment)
    try:
        with svc.engine.begin() as conn:
            decided, moves = identity_store.decide_change(conn, machine_id, change_id, accept=accept,
                                                         revision=body.Revision, who=who, now=now)
    except identity_store.ChangeRefused as e:
        raise APIError(e.status, "rejected" if e.status == 409 else "not_found", str(e), field=e.field) from None
    return {**change_json(decided), "groupMoves": [{"machineId": d, "from": a, "to": b} for d, a, b in moves]}


# Accepting moves a device between device groups, as editing the groups' rules does: the same permission.
@router.post("/machines/{machine_id}/identityChanges/{change_id}/accept")
def accept_identity_change(
    machine_id: str, change_id: int, body: DecisionBody, request: Request,
    _: Principal = requires(Permission.MANAGE_PORTAL_SETTINGS),
) -> dict[str, Any]:
    return decide(request, machine_id, change_id, True, body)


@router.post("/machines/{machine_id}/identityChanges/{change_id}/reject")
def reject_identity_change(
    machine_id: str, change_id: int, body: DecisionBody, request: Request,
    _: Principal = requires(Permission.MANAGE_PORTAL_SETTINGS),
) -> dict[str, Any]:
    return decide(request, machine_id, change_id, False, body)
