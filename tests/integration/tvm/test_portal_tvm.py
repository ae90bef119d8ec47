"""The TVM portal pages on a real server: the dashboard, inventory, weaknesses with why they matched, a device's
software and weaknesses, and the remediation and exception forms (CSRF-checked, permission-gated)."""

from __future__ import annotations

import uuid
from pathlib import Path

from tests.integration.server.rbac_support import PASSWORD, make_user
from tests.integration.server.test_portal_response import _portal
from tests.integration.tvm.test_server_tvm import DEMO_OLD, OPENSSL, import_feeds, inventory_events
from tests.support import VigilServer, enroll_raw, post_batch


def test_tvm_pages_and_forms(sqlite_server: VigilServer, tmp_path: Path) -> None:
    server = sqlite_server
    dev = dict(enroll_raw(server, server.onboarding_package()["token"], "web-01").json())
    make_user(server, "ro")
    with _portal(server, "admin", server.admin_password) as c:
        assert "No feed bundle is imported" in c.get("/tvm").text
        import_feeds(server, tmp_path)
        assert post_batch(server, dev["credential"], inventory_events(
            dev["device_id"], 1, uuid.uuid4().hex, 1, None, [*OPENSSL, DEMO_OLD])).status_code == 200
        home = c.get("/tvm")
        assert home.status_code == 200 and 'id="chart-exposure"' in home.text and "No feed bundle" not in home.text
        assert "upgrade source package openssl to ≥ 3.0.15-1~deb12u1 on 1 device: fixes 3 CVEs, 1 in KEV" in home.text
        assert 'href="/tvm/software/debian-_-openssl"' in home.text and "tvm-stale" in home.text
        assert "libssl3, openssl" in c.get("/tvm/software").text
        item = c.get("/tvm/software/debian-_-openssl").text
        assert "web-01" in item and "CVE-2099-0001" in item
        weak = c.get("/tvm/weaknesses").text
        assert "CVE-2099-1000" in weak and "demo-lib" in weak
        assert f'href="/tvm/devices/{dev["device_id"]}"' in c.get(f"/devices/{dev['device_id']}").text
        device = c.get(f"/tvm/devices/{dev['device_id']}").text
        assert "3.0.15-1~deb12u1" in device and "demo-lib" in device and "installed binaries: libssl3" in device
        csrf = c.cookies["vigil_csrf"]
        form = {"csrf": csrf, "recommendation": "va-_-debian-_-openssl", "due_on": "2099-01-01", "priority": "High",
                "notes": "patch window"}
        assert c.post("/tvm/remediate", data={**form, "csrf": "forged"}).status_code == 403
        assert c.post("/tvm/remediate", data=form).status_code == 303
        bad = c.post("/tvm/remediate", data={**form, "priority": "Urgent"})
        assert bad.status_code == 422 and "priority" in bad.text
        assert c.post("/tvm/except", data={"csrf": csrf, "recommendation": "va-_-pypi-_-demo-lib",
                                           "justification": "AcceptRisk", "scope": "Global", "days": "10",
                                           "comment": "internal tool"}).status_code == 303
        recs = c.get("/tvm/recommendations").text
        assert "patch window" in recs and "0/1 (0%)" in recs and "AcceptRisk" in recs
    with _portal(server, "ro", PASSWORD) as c:
        assert c.get("/tvm").status_code == 200  # read-only holds View data (TVM)
        r = c.post("/tvm/remediate", data={"csrf": c.cookies["vigil_csrf"], "recommendation": "x",
                                           "due_on": "2099-01-01", "priority": "High"})
        assert r.status_code == 403
