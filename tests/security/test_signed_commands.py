"""Security: forged, foreign, stale and replayed commands are refused by a real agent and reported;
nobody without "Active remediation actions" starts a remediation through any route."""

from __future__ import annotations

import base64
import secrets
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi.routing import APIRoute

from tests.e2e.agent_support import AgentProcess
from tests.e2e.response_support import finished, start
from tests.support import VigilServer, enroll_raw
from vigil.config import load_settings
from vigil.core.actions import ActionStatus, ActionType, Approval, MachineAction
from vigil.core.rbac import BasicRole, Permission
from vigil.deploy.signing import load_key
from vigil.server.app import create_app
from vigil.server.auth import PERMISSION_ATTR
from vigil.store import actions as action_store
from vigil.store import db
from vigil.store.schema import machine_actions
from vigil.store.users import create_user
from vigil.wire import ActionCommand, SignedCommand, sign_command

pytestmark = pytest.mark.root


def _engine(server: VigilServer) -> sa.Engine:
    return db.make_engine(load_settings(server.data_dir).db_url)


def _inject(server: VigilServer, device_id: str, signed: SignedCommand) -> str:
    """Put a command straight into the server's queue, as an attacker with database access might."""
    now = datetime.now(UTC)
    action = MachineAction(
        id=signed.command.action_id, device_id=device_id, type=ActionType.RUN_ANTIVIRUS_SCAN,
        status=ActionStatus.PENDING, approval=Approval.NOT_REQUIRED, requestor="mallory", comment="forged",
        parameters={}, created_at=now, updated_at=now, expires_at=now + timedelta(hours=1),
    )
    with _engine(server).begin() as conn:
        action_store.insert(conn, action, signed.model_dump(mode="json"))
    return action.id


def _cmd(device_id: str, issued: datetime | None = None, **kw: object) -> ActionCommand:
    issued = issued or datetime.now(UTC)
    return ActionCommand(action_id=kw.pop("action_id", None) or secrets.token_hex(16),  # type: ignore[arg-type]
                         device_id=device_id, type="RunAntiVirusScan", parameters={"ScanType": "Quick"},
                         issued_at=issued, expires_at=issued + timedelta(hours=1), nonce=secrets.token_hex(16))


def _signed_anyway(key: Ed25519PrivateKey, cmd: ActionCommand) -> SignedCommand:
    return SignedCommand(command=cmd, signature=base64.b64encode(key.sign(cmd.signing_bytes())).decode())


def test_the_agent_refuses_and_reports_bad_commands(sqlite_server: VigilServer, agent: AgentProcess) -> None:
    server, dev = sqlite_server, agent.device_id
    key = load_key(load_settings(server.data_dir))
    cases = {
        "unsigned": SignedCommand(command=_cmd(dev)),
        "bad_signature": sign_command(Ed25519PrivateKey.generate(), _cmd(dev)),
        "other_device": sign_command(key, _cmd("f" * 40)),
        "expired": sign_command(key, _cmd(dev, datetime.now(UTC) - timedelta(hours=2))),
        # Valid for ten years under the server's own key (sign_command itself refuses to make it).
        "lifetime": _signed_anyway(key, _cmd(dev).model_copy(
            update={"expires_at": datetime.now(UTC) + timedelta(days=3650)})),
    }
    # An expired command whose expiry was moved forward after it was signed.
    stale = sign_command(key, _cmd(dev, datetime.now(UTC) - timedelta(hours=2)))
    tampered = stale.model_copy(update={"command": stale.command.model_copy(
        update={"expires_at": datetime.now(UTC) + timedelta(hours=1)})})
    ids = {reason: _inject(server, dev, signed) for reason, signed in cases.items()}
    ids["bad_signature (expiry moved)"] = _inject(server, dev, tampered)
    with server.client(server.admin_token()) as c:
        for reason, action_id in ids.items():
            a = finished(c, action_id)
            assert a["status"] == "Failed" and a["refused"] == reason.split()[0], a
        assert "at most 1 day" in finished(c, ids["lifetime"])["resultMessage"]
        # A genuine action, then the very same signed command put back in the queue: a replay.
        real = finished(c, start(c, dev, "runAntiVirusScan")["id"], timeout=300)
        assert real["status"] == "Succeeded" and real["refused"] is None, real  # ran: a real quick scan
        with _engine(server).begin() as conn:
            conn.execute(machine_actions.update().where(machine_actions.c.id == real["id"]).values(
                status="Pending", delivered_at=None, result_message="", refused=None))
        again = finished(c, real["id"])
        assert again["refused"] == "replay", again
        audit = c.get("/api/audit", params={"action": "machineaction.result"})
        if audit.status_code == 200:  # the audit API belongs to the identity work; check it when present
            assert any((e.get("after") or {}).get("refused") == "replay" for e in audit.json()["value"])


def _api_routes(routes: list[Any], prefix: str = "") -> Iterator[tuple[str, APIRoute]]:
    """Every APIRoute with its full path; FastAPI 0.16x nests included routers instead of copying routes."""
    for r in routes:
        if isinstance(r, APIRoute):
            yield prefix + r.path, r
        elif hasattr(r, "include_context"):
            yield from _api_routes(r.include_context.included_router.routes, prefix + r.include_context.prefix)


REMEDIATION_ROUTES = {
    "/api/machines/{machine_id}/isolate", "/api/machines/{machine_id}/unisolate",
    "/api/machines/{machine_id}/restrictCodeExecution", "/api/machines/{machine_id}/unrestrictCodeExecution",
    "/api/machines/{machine_id}/StopAndQuarantineFile", "/api/machines/{machine_id}/restoreQuarantinedFile",
    "/api/machines/{machine_id}/killProcess", "/api/machineactions/{action_id}/cancel",
    "/api/machineactions/{action_id}/undo", "/api/machineactions/approve", "/api/machineactions/reject",
}


def test_every_remediation_route_needs_the_remediation_permission(tmp_path: Path) -> None:
    server = VigilServer.create(tmp_path / "s", "")
    app = create_app(load_settings(server.data_dir))
    guards = {path: {getattr(d.call, PERMISSION_ATTR, None) for d in r.dependant.dependencies}
              for path, r in _api_routes(app.routes)}
    for path in REMEDIATION_ROUTES:
        assert Permission.REMEDIATION_SECOPS in guards[path], path
    # Every route that creates a machine action is in the list above or is a non-remediation one (reads such as a
    # device's software or vulnerabilities create nothing).
    posts = {path for path, r in _api_routes(app.routes) if "POST" in r.methods}
    creating = {p for p in posts if p.startswith("/api/machines/{machine_id}/") and p.split("/")[-1][0].isalpha()
                and p.split("/")[-1] not in ("timeline", "tags", "offboard", "sessions", "identityChanges")
                and "/identityChanges/" not in p}
    # startInvestigation needs Alerts investigation; its remediations wait for the remediation permission or the
    # device group's automation level.
    assert creating - REMEDIATION_ROUTES == {"/api/machines/{machine_id}/collectInvestigationPackage",
                                             "/api/machines/{machine_id}/runAntiVirusScan",
                                             "/api/machines/{machine_id}/startInvestigation"}


def test_a_read_only_user_cannot_start_remediation_anywhere(sqlite_server: VigilServer) -> None:
    server = sqlite_server
    dev = enroll_raw(server, server.onboarding_package()["token"], "web-01").json()["device_id"]
    with _engine(server).begin() as conn:
        create_user(conn, "reader", "correct horse battery", BasicRole.READ_ONLY, datetime.now(UTC))
    with server.client() as c:
        token = c.post("/api/auth/login", json={"username": "reader", "password": "correct horse battery"}
                       ).json()["access_token"]
    with server.client(server.admin_token()) as admin:
        held = start(admin, dev, "isolate", RequireApproval=True)
    body = {"Comment": "x", "IsolationType": "Full", "QuarantineId": held["id"], "Sha256": "a" * 64,
            "ProcessId": 4242, "ProcessCreationTime": "2026-01-01T00:00:00Z", "ActionIds": [held["id"]]}
    with server.client(token) as c:
        assert c.get("/api/machineactions").status_code == 200  # reading is allowed
        for path in REMEDIATION_ROUTES:
            url = path.format(machine_id=dev, action_id=held["id"])
            fields = {"/isolate": ("Comment", "IsolationType"), "/StopAndQuarantineFile": ("Comment", "Sha256"),
                      "/restoreQuarantinedFile": ("Comment", "QuarantineId"),
                      "/killProcess": ("Comment", "ProcessId", "ProcessCreationTime"),
                      "/approve": ("Comment", "ActionIds"), "/reject": ("Comment", "ActionIds")}
            keys = next((v for k, v in fields.items() if url.endswith(k)), ("Comment",))
            r = c.post(url, json={k: body[k] for k in keys})
            assert r.status_code == 403, (url, r.text)
        sid = c.post(f"/api/machines/{dev}/LiveResponse/sessions")
        assert sid.status_code == 403  # read-only holds no live response permission either
    # The portal's forms are guarded by the same permission (a signed-in reader with a valid CSRF token).
    with server.client() as c:
        c.get("/login")
        csrf = c.cookies.get("vigil_csrf") or ""
        c.post("/login", data={"username": "reader", "password": "correct horse battery", "csrf": csrf})
        for form in (f"/devices/{dev}/actions/isolate", f"/actioncenter/{held['id']}/undo", "/actioncenter/decide"):
            r = c.post(form, data={"csrf": csrf, "comment": "x", "decision": "approve", "ids": held["id"]})
            assert r.status_code == 403, (form, r.status_code)
    with server.client(server.admin_token()) as admin:
        assert admin.get(f"/api/machineactions/{held['id']}").json()["approval"] == "PendingApproval"


def test_four_eyes_nobody_approves_their_own_request_and_bulk_approval_stays_all_or_nothing(
    sqlite_server: VigilServer,
) -> None:
    server = sqlite_server
    dev = enroll_raw(server, server.onboarding_package()["token"], "db-01").json()["device_id"]
    with _engine(server).begin() as conn:
        create_user(conn, "bob", "correct horse battery", BasicRole.FULL_ACCESS, datetime.now(UTC))
    with server.client() as c:
        bob_token = c.post("/api/auth/login", json={"username": "bob", "password": "correct horse battery"}
                           ).json()["access_token"]
    with server.client(server.admin_token()) as admin, server.client(bob_token) as bob:
        own, own_too = (start(admin, dev, "isolate", RequireApproval=True)["id"] for _ in range(2))
        bobs = start(bob, dev, "isolate", RequireApproval=True)["id"]

        r = admin.post("/api/machineactions/approve", json={"ActionIds": [own], "Comment": "looks fine"})
        assert r.status_code == 403, r.text
        assert r.json()["error"] == "four_eyes" and "four-eyes rule" in r.json()["detail"], r.text
        assert "admin requested action" in r.json()["detail"]
        # One self-approval in a bulk request refuses the whole request: bob's action is not approved either.
        r = admin.post("/api/machineactions/approve", json={"ActionIds": [bobs, own], "Comment": "both"})
        assert r.status_code == 403, r.text
        for i in (own, bobs):
            a = admin.get(f"/api/machineactions/{i}").json()
            assert (a["approval"], a["status"]) == ("PendingApproval", "Pending"), a
        refused = admin.get("/api/audit", params={"action": "machineaction.approve_refused"}).json()["value"]
        assert sorted(e["target_id"] for e in refused) == sorted([own, own, bobs])
        assert all(e["actor"] == "admin" and "four-eyes rule" in e["reason"] for e in refused)
        assert admin.get("/api/audit/verify").json()["ok"] is True

        # Rejecting one's own request only cancels it, so it stays allowed; another analyst may approve.
        r = admin.post("/api/machineactions/reject", json={"ActionIds": [own_too], "Comment": "not needed"})
        assert r.status_code == 200 and r.json()["value"][0]["approval"] == "Rejected", r.text
        r = admin.post("/api/machineactions/approve", json={"ActionIds": [bobs], "Comment": "confirmed"})
        assert r.status_code == 200 and r.json()["value"][0]["approval"] == "Approved", r.text
        r = bob.post("/api/machineactions/approve", json={"ActionIds": [own], "Comment": "confirmed"})
        assert r.status_code == 200 and r.json()["value"][0]["approval"] == "Approved", r.text
