"""The API, the portal and the CLI are three adapters over one application layer: the same result, the same refusal.

Each case runs once per adapter against one real server (a subprocess on SQLite) and the real `vigil` command;
every change is checked in the audit log under the actor of the adapter that made it (the CLI as the OS user).
"""

from __future__ import annotations

import html
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.server.rbac_support import PASSWORD, admin, groups_a_and_b, make_user, token_of
from tests.support import VigilServer, enroll_raw
from vigil.app.principal import os_user
from vigil.core.rbac import Permission

ADAPTERS = ["api", "portal", "cli"]
TIER1 = [Permission.VIEW_DATA_SECOPS.value, Permission.ALERTS_INVESTIGATION.value]
CLI_CODES = {"forbidden": 4, "not_found": 3, "signoff_required": 5}
HTTP_CODES = {"forbidden": 403, "not_found": 404, "signoff_required": 409}


@dataclass(frozen=True)
class Refusal:
    """What an adapter said no with: the error's kind and its sentence, whatever the rendering."""

    error: str
    detail: str


@dataclass
class World:
    server: VigilServer
    a: str  # device in group A, which alice sees
    b: str  # device in group B, which she does not
    leaving: dict[str, str]  # adapter -> a device that adapter offboards
    tmp: Path
    # Sign-ins are rate-limited per source: one bearer token and one portal session per user, kept for the module.
    tokens: dict[str, str] = field(default_factory=dict)
    browsers: dict[str, httpx.Client] = field(default_factory=dict)

    def token(self, user: str) -> str:
        if user not in self.tokens:
            self.tokens[user] = self.server.admin_token() if user == "admin" else token_of(self.server, user)
        return self.tokens[user]

    def api(self, user: str = "admin") -> httpx.Client:
        return self.server.client(self.token(user))

    def browser(self, user: str) -> httpx.Client:
        if user not in self.browsers:
            c = self.server.client()
            c.get("/login")
            password = self.server.admin_password if user == "admin" else PASSWORD
            r = c.post("/login", data={"username": user, "password": password, "csrf": c.cookies["vigil_csrf"]})
            assert r.status_code in (200, 303) and "vigil_session" in c.cookies, r.text
            self.browsers[user] = c
        return self.browsers[user]

    def audit(self, action: str) -> list[dict[str, Any]]:
        with self.api() as c:
            r = c.get("/api/audit", params={"action": action})
            assert r.status_code == 200, r.text
            return list(r.json()["value"])


def _enroll(server: VigilServer, c: httpx.Client, hostname: str) -> str:
    pkg = c.post("/api/onboarding/packages", json={})
    assert pkg.status_code == 200, pkg.text
    r = enroll_raw(server, pkg.json()["token"], hostname)
    assert r.status_code in (200, 201), r.text
    return str(r.json()["device_id"])


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("adapters")
    server = VigilServer.create(tmp / "server", "")
    server.start()
    try:
        with admin(server) as c:
            a, b = _enroll(server, c, "a-web-01.corp.test"), _enroll(server, c, "b-db-01.corp.test")
            leaving = {name: _enroll(server, c, f"leaving-{name}.corp.test") for name in ADAPTERS}
            groups_a_and_b(c)
            r = c.put("/api/roles/tier1", json={"permissions": TIER1, "userGroups": ["ug-tier1"]})
            assert r.status_code == 200, r.text
            assert c.post("/api/rbac/mode", json={"mode": "rbac"}).status_code == 200
            # A plan nobody has signed yet: every device group but the Evaluate ring's is gated.
            assert c.post("/api/plan/init", json={"organization": "ACME"}).json()["gateOpen"] is False
        make_user(server, "alice", groups=("ug-a", "ug-tier1"))
        w = World(server, a, b, leaving, tmp)
        yield w
        for c in w.browsers.values():
            c.close()
    finally:
        server.stop()


class Adapter:
    """One edge of Vigil, driven the way its users drive it."""

    def __init__(self, world: World) -> None:
        self.w = world

    actor_admin: str = ""

    def devices(self, user: str) -> set[str]:
        raise NotImplementedError

    def isolate(self, user: str, device: str, comment: str) -> Refusal | str:
        raise NotImplementedError

    def package(self, group: str, override: str | None) -> Refusal | dict[str, Any]:
        raise NotImplementedError

    def offboard(self, device: str, comment: str) -> None:
        raise NotImplementedError


class Api(Adapter):
    actor_admin = "admin"

    def _client(self, user: str) -> httpx.Client:
        return self.w.api(user)

    @staticmethod
    def _refusal(r: httpx.Response) -> Refusal:
        body = r.json()
        assert r.status_code == HTTP_CODES[body["error"]], r.text
        return Refusal(body["error"], body["detail"])

    def devices(self, user: str) -> set[str]:
        with self._client(user) as c:
            r = c.get("/api/machines")
        assert r.status_code == 200, r.text
        return {m["id"] for m in r.json()["value"]}

    def isolate(self, user: str, device: str, comment: str) -> Refusal | str:
        with self._client(user) as c:
            r = c.post(f"/api/machines/{device}/isolate", json={"Comment": comment, "IsolationType": "Full"})
        return str(r.json()["id"]) if r.status_code == 201 else self._refusal(r)

    def package(self, group: str, override: str | None) -> Refusal | dict[str, Any]:
        with self._client("admin") as c:
            r = c.post("/api/onboarding/packages", json={"group": group, "override_reason": override})
        return dict(r.json()) if r.status_code == 200 else self._refusal(r)

    def offboard(self, device: str, comment: str) -> None:
        with self._client("admin") as c:
            r = c.post(f"/api/machines/{device}/offboard", json={"Comment": comment})
        assert r.status_code == 200 and r.json()["status"] == "Succeeded", r.text


class Portal(Adapter):
    actor_admin = "admin"

    def _browser(self, user: str) -> httpx.Client:
        return self.w.browser(user)

    @staticmethod
    def _refusal(r: httpx.Response) -> Refusal:
        m = re.search(r'id="refusal" data-error="([^"]+)">(.*?)</p>', r.text, re.S)
        assert m, f"{r.status_code}: no refusal page:\n{r.text[:2000]}"
        assert r.status_code == HTTP_CODES[m.group(1)]
        return Refusal(m.group(1), html.unescape(m.group(2)).strip())

    def devices(self, user: str) -> set[str]:
        c = self._browser(user)
        r = c.get("/devices")
        assert r.status_code == 200, r.text
        return set(re.findall(r'href="/devices/([0-9A-Za-z-]+)"', r.text))

    def isolate(self, user: str, device: str, comment: str) -> Refusal | str:
        c = self._browser(user)
        r = c.post(f"/devices/{device}/actions/isolate", data={
            "csrf": c.cookies["vigil_csrf"], "comment": comment, "isolation_type": "Full"})
        return "submitted" if r.status_code == 303 else self._refusal(r)

    def package(self, group: str, override: str | None) -> Refusal | dict[str, Any]:
        c = self._browser("admin")
        r = c.post("/onboarding", data={"csrf": c.cookies["vigil_csrf"], "group": group,
                                        "override_reason": override or ""})
        return dict(r.json()) if r.status_code == 200 else self._refusal(r)

    def offboard(self, device: str, comment: str) -> None:
        c = self._browser("admin")
        r = c.post(f"/devices/{device}/offboard", data={"csrf": c.cookies["vigil_csrf"], "comment": comment})
        assert r.status_code == 303 and r.headers["location"] == f"/devices/{device}", r.text


class Cli(Adapter):
    actor_admin = f"cli:{os_user()}"

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        d = self.w.server.data_dir
        env = {**os.environ, "VIGIL_DATA_DIR": str(d)}
        env.pop("VIGIL_DATABASE_URL", None)
        return subprocess.run([sys.executable, "-m", "vigil", *args, "--data-dir", str(d)],
                              capture_output=True, text=True, env=env, timeout=120, check=False)

    @staticmethod
    def _refusal(p: subprocess.CompletedProcess[str]) -> Refusal:
        line = p.stderr.strip().splitlines()[-1]
        assert line.startswith("vigil: error: "), p.stderr
        error = {v: k for k, v in CLI_CODES.items()}[p.returncode]
        return Refusal(error, re.sub(r" \(field: \w+\)$", "", line.removeprefix("vigil: error: ")))

    @staticmethod
    def _as(user: str) -> list[str]:
        return [] if user == "admin" else ["--as", user]

    def devices(self, user: str) -> set[str]:
        p = self.run("devices", "list", "--json", *self._as(user))
        assert p.returncode == 0, p.stderr
        return {d["id"] for d in json.loads(p.stdout)}

    def isolate(self, user: str, device: str, comment: str) -> Refusal | str:
        p = self.run("devices", "isolate", device, "--comment", comment, *self._as(user))
        return p.stdout.strip() if p.returncode == 0 else self._refusal(p)

    def package(self, group: str, override: str | None) -> Refusal | dict[str, Any]:
        out = self.w.tmp / f"pkg-{group}-{bool(override)}.json"
        extra = ["--override-reason", override] if override else []
        p = self.run("onboarding-package", "--group", group, "-o", str(out), *extra)
        return dict(json.loads(out.read_text())) if p.returncode == 0 else self._refusal(p)

    def offboard(self, device: str, comment: str) -> None:
        p = self.run("offboard", device, "--comment", comment)
        assert p.returncode == 0 and "Offboarded" in p.stderr, p.stderr


KINDS: dict[str, type[Adapter]] = {"api": Api, "portal": Portal, "cli": Cli}


@pytest.fixture(params=ADAPTERS)
def adapter(request: pytest.FixtureRequest, world: World) -> Adapter:
    return KINDS[request.param](world)


def test_a_scoped_analyst_lists_only_the_devices_of_their_groups(adapter: Adapter, world: World) -> None:
    assert adapter.devices("alice") == {world.a}
    everything = adapter.devices("admin")
    assert {world.a, world.b, *world.leaving.values()} <= everything


def test_isolating_without_the_permission_is_refused_the_same_way_and_records_nothing(
    adapter: Adapter, world: World
) -> None:
    got = adapter.isolate("alice", world.a, "contain it")
    assert got == Refusal("forbidden", f"this needs the permission '{Permission.REMEDIATION_SECOPS}'")
    with world.api() as c:
        assert c.get("/api/machineactions", params={"machineId": world.a}).json()["value"] == []
    assert [e for e in world.audit("machineaction.create") if e["target_id"] == world.a] == []


def test_a_package_for_a_gated_ring_is_refused_then_written_with_an_audited_override(
    adapter: Adapter, world: World
) -> None:
    refused = adapter.package("Group B", None)
    assert isinstance(refused, Refusal) and refused.error == "signoff_required"
    assert refused.detail.startswith("production onboarding is gated: plan version 1 lacks sign-off")
    reason = f"pilot through the {type(adapter).__name__} adapter"
    before = len(world.audit("onboarding.package"))
    pkg = adapter.package("Group B", reason)
    assert isinstance(pkg, dict) and pkg["group"] == "Group B" and pkg["token"].startswith("vge_")
    overrides = [e for e in world.audit("onboarding.gate_override") if e["reason"] == reason]
    assert [(e["actor"], e["target_id"]) for e in overrides] == [(adapter.actor_admin, "Group B")]
    made = world.audit("onboarding.package")
    assert len(made) == before + 1 and made[0]["actor"] == adapter.actor_admin  # newest first
    # The package's token enrolls a device into the group it names.
    r = enroll_raw(world.server, pkg["token"], f"pilot-{type(adapter).__name__.lower()}")
    assert r.status_code in (200, 201), r.text


def test_offboarding_revokes_the_device_audited_as_the_adapters_caller(adapter: Adapter, world: World) -> None:
    name = type(adapter).__name__.lower()
    device = world.leaving[name]
    adapter.offboard(device, f"decommissioned via {name}")
    with world.api() as c:
        assert c.get(f"/api/machines/{device}").json()["isOffboarded"] is True
    gone = [e for e in world.audit("device.offboard") if e["target_id"] == device]
    assert [(e["actor"], e["reason"]) for e in gone] == [(adapter.actor_admin, f"decommissioned via {name}")]


def test_isolating_with_the_permission_records_a_signed_action_under_the_callers_name(
    adapter: Adapter, world: World
) -> None:
    comment = f"contain via {type(adapter).__name__}"
    assert not isinstance(adapter.isolate("admin", world.b, comment), Refusal)
    with world.api() as c:
        mine = [a for a in c.get("/api/machineactions", params={"machineId": world.b}).json()["value"]
                if a["requestorComment"] == comment]
    assert [(a["type"], a["requestor"], a["status"]) for a in mine] == [("Isolate", adapter.actor_admin, "Pending")]
    audited = [e for e in world.audit("machineaction.create") if e["target_id"] == mine[0]["id"]]
    assert [e["actor"] for e in audited] == [adapter.actor_admin]
