"""TVM on a real server (SQLite and PostgreSQL): a signed feed bundle imported with the CLI, software inventories
posted as the agent sends them (a full inventory, then a diff), weaknesses in Defender's API with why they matched,
recommendations, exposure scores, remediation progress measured from the inventory, exceptions and their effect,
device-group scope for a restricted user, the audit log, and hunting on DeviceTvmSoftwareInventory."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import httpx

from tests.integration.server.rbac_support import admin, groups_a_and_b, make_user, token_of
from tests.support import VigilServer, enroll_raw, post_batch
from tests.unit.tvm.corpus_support import write_corpus
from vigil.core.rbac import Permission
from vigil.tvm.model import Package
from vigil.tvm.purls import INVENTORY_ACTION, inventory_parts, to_purl

OPENSSL = [Package("Debian:12", "libssl3", "3.0.11-1~deb12u1", "openssl", "3.0.11-1~deb12u1", {"arch": "amd64"}),
           Package("Debian:12", "openssl", "3.0.11-1~deb12u1", "openssl", "3.0.11-1~deb12u1", {"arch": "amd64"}),
           Package("Debian:12", "curl", "7.88.1-10+deb12u5", "curl", "7.88.1-10+deb12u5")]
DEMO_OLD, DEMO_NEW = Package("PyPI", "demo-lib", "1.0.0"), Package("PyPI", "demo-lib", "2.0.0")
LEFTPAD = Package("npm", "left-pad", "1.3.0")


def vigil(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "XDG_CACHE_HOME": str(home / "cache")}
    return subprocess.run([sys.executable, "-m", "vigil", *args], capture_output=True, text=True, env=env, timeout=120)


def import_feeds(server: VigilServer, tmp_path: Path) -> None:
    write_corpus(tmp_path / "vulns")
    r = vigil("tvm", "feed", "build", "--feeds", str(tmp_path / "vulns"), "--output", str(tmp_path / "f.zip"),
              "--key", str(tmp_path / "feed.key"), "--sequence", "7", home=tmp_path)
    assert r.returncode == 0, r.stderr
    pub = next(x for x in r.stdout.splitlines() if x.startswith("public key: ")).removeprefix("public key: ")
    r = vigil("tvm", "feed", "import", str(tmp_path / "f.zip"), "--public-key", pub, "--data-dir",
              str(server.data_dir), home=tmp_path)
    assert r.returncode == 0, r.stderr


def inventory_events(device_id: str, first_report: int, series: str, generation: int, base: int | None,
                     added: list[Package], removed: list[Package] = ()) -> list[dict[str, Any]]:  # type: ignore[assignment]
    parts = inventory_parts(series, generation, base, [to_purl(p) for p in added], [to_purl(p) for p in removed])
    return [{"table": "DeviceEvents", "Timestamp": "2026-11-28T09:00:00Z", "DeviceId": device_id,
             "ActionType": INVENTORY_ACTION, "ReportId": first_report + i, "AdditionalFields": part}
            for i, part in enumerate(parts)]


def _enroll(server: VigilServer, c: httpx.Client, hostname: str) -> dict[str, Any]:
    pkg = c.post("/api/onboarding/packages", json={})
    assert pkg.status_code == 200, pkg.text
    r = enroll_raw(server, pkg.json()["token"], hostname)
    assert r.status_code in (200, 201), r.text
    return dict(r.json())


def test_inventory_weaknesses_scores_remediation_exceptions_and_scope(server: VigilServer, tmp_path: Path) -> None:
    import_feeds(server, tmp_path)
    series = uuid.uuid4().hex
    with admin(server) as c:
        a = _enroll(server, c, "a-web-01")
        b = _enroll(server, c, "b-db-01")
        groups_a_and_b(c)
        assert post_batch(server, a["credential"], inventory_events(
            a["device_id"], 1, series, 1, None, [*OPENSSL, DEMO_OLD])).status_code == 200
        assert post_batch(server, b["credential"], inventory_events(
            b["device_id"], 1, series, 1, None, [LEFTPAD])).status_code == 200

        vulns = c.get(f"/api/machines/{a['device_id']}/vulnerabilities").json()["value"]
        by_cve = {v["id"]: v for v in vulns}
        assert set(by_cve) == {"CVE-2099-0001", "CVE-2099-0002", "CVE-2099-0003", "CVE-2099-1000"}
        kev = by_cve["CVE-2099-0001"]
        assert kev["productName"] == "openssl" and kev["productVersion"] == "3.0.11-1~deb12u1"
        assert kev["fixedVersion"] == "3.0.15-1~deb12u1" and kev["advisories"] == ["DSA-5900-1"]
        assert kev["publicExploit"] is True and "ExploitedInTheWild" in kev["cveTags"]
        assert "3.0.15-1~deb12u1" in kev["why"] and "libssl3" in kev["why"]
        assert by_cve["CVE-2099-0003"]["fixedVersion"] == "3.0.11-1~deb12u2"
        assert by_cve["CVE-2099-1000"]["productName"] == "demo-lib"

        software = {s["id"]: s for s in c.get("/api/Software").json()["value"]}
        openssl = software["debian-_-openssl"]
        assert (openssl["weaknesses"], openssl["exposedMachines"], openssl["publicExploit"]) == (3, 1, True)
        assert openssl["packages"] == ["libssl3", "openssl"]
        assert software["debian-_-curl"]["weaknesses"] == 0  # DSA-5799-1 says bookworm's curl is not affected
        assert c.get("/api/Software/debian-_-openssl").json()["installedMachines"] == 1
        refs = c.get("/api/Software/debian-_-openssl/machineReferences").json()["value"]
        assert [m["computerDnsName"] for m in refs] == ["a-web-01"]
        assert c.get("/api/Software/nope-_-nothing").status_code == 404

        cves = {v["id"]: v for v in c.get("/api/vulnerabilities").json()["value"]}
        assert cves["CVE-2099-4000"]["exposedMachines"] == 1  # left-pad on b
        assert c.get("/api/vulnerabilities/CVE-2099-0001").json()["evidence"][0]["machineId"] == a["device_id"]

        recs = {r["id"]: r for r in c.get("/api/recommendations").json()["value"]}
        rec = recs["va-_-debian-_-openssl"]
        assert rec["remediationType"] == "Update" and rec["recommendedVersion"] == "3.0.15-1~deb12u1"
        assert (rec["weaknesses"], rec["knownExploitedCount"], rec["exposedMachinesCount"]) == (3, 1, 1)
        assert rec["exposureImpact"] > 0
        assert "fixes 3 CVEs, 1 in KEV" in rec["summary"]

        org = c.get("/api/exposureScore").json()
        assert 0 < org["score"] <= 100 and org["band"] in ("low", "medium", "high")
        by_group = {g["rbacGroupName"]: g["score"] for g in c.get("/api/exposureScore/ByMachineGroups").json()["value"]}
        assert by_group["Group A"] > by_group["Group B"] > 0
        history = c.get("/api/exposureScore/history?days=7").json()["value"]
        assert history and history[-1]["score"] == round(org["score"])

        # a remediation request, then the agent's diff (pip upgraded demo-lib): progress comes from the inventory
        task = c.post("/api/remediationTasks", json={"recommendationId": "va-_-pypi-_-demo-lib",
                                                     "dueOn": "2099-01-01", "priority": "High",
                                                     "requesterNotes": "upgrade the app's venv"})
        assert task.status_code == 201, task.text
        assert (task.json()["progress"], task.json()["status"], task.json()["targetDevices"]) == (0, "Active", 1)
        bad = c.post("/api/remediationTasks", json={"recommendationId": "va-_-pypi-_-demo-lib", "dueOn": "soon",
                                                    "priority": "High"})
        assert bad.status_code == 422 and bad.json()["field"] == "dueOn"
        assert post_batch(server, a["credential"], inventory_events(
            a["device_id"], 10, series, 2, 1, [DEMO_NEW], [DEMO_OLD])).status_code == 200
        after = {v["id"] for v in c.get(f"/api/machines/{a['device_id']}/vulnerabilities").json()["value"]}
        assert "CVE-2099-1000" not in after and "CVE-2099-0001" in after
        done = c.get(f"/api/remediationTasks/{task.json()['id']}").json()
        assert (done["progress"], done["status"]) == (100, "Completed")
        csv_text = c.get(f"/api/remediationTasks/{task.json()['id']}/export").text
        assert csv_text.splitlines()[0].startswith("RemediationId,") and a["device_id"] in csv_text
        software_a = {s["name"]: s for s in c.get(f"/api/machines/{a['device_id']}/software").json()["value"]}
        assert software_a["demo-lib"]["versions"] == ["2.0.0"]

        # a diff on a generation the server does not hold is not applied
        assert post_batch(server, a["credential"], inventory_events(
            a["device_id"], 20, series, 9, 8, [], [OPENSSL[0]])).status_code == 200
        assert c.get("/api/Software/debian-_-openssl").json()["packages"] == ["libssl3", "openssl"]

        # an exception on openssl for Group A: its weaknesses are marked and leave the exposure score
        before = c.get("/api/exposureScore").json()["score"]
        group_a = next(g["rbacGroupId"] for g in c.get("/api/exposureScore/ByMachineGroups").json()["value"]
                       if g["rbacGroupName"] == "Group A")
        exc = c.post("/api/recommendations/va-_-debian-_-openssl/exceptions", json={
            "justification": "AlternateMitigation", "expiresInDays": 30, "scope": "DeviceGroups",
            "rbacGroupIds": [group_a], "comment": "TLS terminated by the load balancer"})
        assert exc.status_code == 201, exc.text
        assert c.get("/api/exposureScore").json()["score"] < before
        marked = {v["id"]: v for v in c.get(f"/api/machines/{a['device_id']}/vulnerabilities").json()["value"]}
        assert marked["CVE-2099-0001"]["cveMitigationStatus"] == "Exception: AlternateMitigation"
        assert c.get("/api/recommendations/va-_-debian-_-openssl").json()["status"] == "Exception"
        wrong = c.post("/api/recommendations/va-_-debian-_-openssl/exceptions", json={
            "justification": "BecauseISaySo", "expiresInDays": 30, "scope": "Global"})
        assert wrong.status_code == 422 and wrong.json()["field"] == "justification"
        cancelled = c.post(f"/api/exceptions/{exc.json()['id']}/cancel", json={"comment": "LB replaced"})
        assert cancelled.status_code == 200 and cancelled.json()["status"] == "Cancelled"
        assert c.get("/api/exposureScore").json()["score"] == before

        audit = c.get("/api/audit").json()
        actions = {e["action"] for e in audit.get("value", audit if isinstance(audit, list) else [])}
        assert {"tvm.remediation.create", "tvm.exception.create", "tvm.exception.cancel"} <= actions

        # a user of Group A sees Group A's device only, in the API and in hunting
        assert c.put("/api/roles/vuln-reader", json={"permissions": [Permission.VIEW_DATA_TVM.value,
                                                                     Permission.VIEW_DATA_SECOPS.value],
                                                     "userGroups": ["ug-readers"]}).status_code == 200
        assert c.post("/api/rbac/mode", json={"mode": "rbac"}).status_code == 200
        make_user(server, "alice", groups=("ug-a", "ug-readers"))
    with server.client(token_of(server, "alice")) as alice:
        assert {s["id"] for s in alice.get("/api/Software").json()["value"]} >= {"debian-_-openssl"}
        assert "npm-_-left-pad" not in {s["id"] for s in alice.get("/api/Software").json()["value"]}
        assert "CVE-2099-4000" not in {v["id"] for v in alice.get("/api/vulnerabilities").json()["value"]}
        assert alice.get(f"/api/machines/{b['device_id']}/vulnerabilities").status_code == 404
        assert alice.get(f"/api/machines/{a['device_id']}/software").status_code == 200
        hunt = alice.post("/api/advancedqueries/run", json={
            "Query": "SELECT DeviceName, SoftwareName, SoftwareVersion FROM DeviceTvmSoftwareInventory "
                     "ORDER BY SoftwareName"})
        assert hunt.status_code == 200, hunt.text
        rows = hunt.json()["Results"]
        assert {r["DeviceName"] for r in rows} == {"a-web-01"}
        assert sorted(r["SoftwareName"] for r in rows) == ["curl", "demo-lib", "libssl3", "openssl"]
        weak = alice.post("/api/advancedqueries/run", json={
            "Query": "SELECT CveId, IsKnownExploited, CvssScore FROM DeviceTvmSoftwareVulnerabilities "
                     "WHERE CveId = 'CVE-2099-0001'"}).json()["Results"]
        assert weak == [{"CveId": "CVE-2099-0001", "IsKnownExploited": True, "CvssScore": None}]
        assert alice.post("/api/remediationTasks", json={"recommendationId": "va-_-debian-_-openssl",
                                                         "dueOn": "2099-01-01", "priority": "Low"}).status_code == 403
