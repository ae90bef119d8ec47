"""The live-response console's forms without an agent: the session limits, server-side verbs answered at once,
device verbs queued (the log marks them pending), the library upload, and the permissions of each."""

from __future__ import annotations

from tests.e2e import portal_seed
from tests.integration.server.rbac_support import PASSWORD, admin, make_user
from tests.integration.server.test_portal_response import _portal
from tests.support import VigilServer


def test_the_console_without_an_agent(sqlite_server: VigilServer) -> None:
    server = sqlite_server
    [dev] = portal_seed.enroll(server, ["lr-01.corp.example"])
    did = dev["device_id"]
    make_user(server, "ro")
    with _portal(server, "ro", PASSWORD) as c:
        r = c.get(f"/devices/{did}/liveresponse", headers={"Accept": "text/html"})
        assert r.status_code == 403 and "Live response capabilities – Basic" in r.text
        assert "/liveresponse" not in c.get(f"/devices/{did}").text
    with _portal(server, "admin", server.admin_password) as c:
        csrf = c.cookies["vigil_csrf"]
        assert 'id="open-live-response"' in c.get(f"/devices/{did}").text
        assert "Start session" in c.get(f"/devices/{did}/liveresponse").text
        assert c.post(f"/devices/{did}/liveresponse", data={"csrf": "forged"}).status_code == 403
        assert c.post(f"/devices/{did}/liveresponse", data={"csrf": csrf}).status_code == 303
        console = c.get(f"/devices/{did}/liveresponse").text
        sid = int(console.split('data-session="')[1].split('"')[0])
        helped = c.post(f"/liveresponse/{sid}/command", data={"csrf": csrf, "line": "help"})
        assert helped.status_code == 200 and 'id="lr-local"' in helped.text and "getfile" in helped.text
        bad = c.post(f"/liveresponse/{sid}/command", data={"csrf": csrf, "line": "rm -rf /"})
        assert bad.status_code == 422
        assert c.post(f"/liveresponse/{sid}/command", data={"csrf": csrf, "line": "processes"}).status_code == 303
        log = c.get(f"/liveresponse/{sid}/log").text
        assert 'data-pending="1"' in log and "<code>processes</code>" in log and "Pending" in log
        up = c.post("/liveresponse/library", data={"csrf": csrf, "machine_id": did, "description": "greets"},
                    files={"file": ("hello.sh", b"echo hello\n")})
        assert up.status_code == 303
        bad_name = c.post("/liveresponse/library", data={"csrf": csrf, "machine_id": did},
                          files={"file": ("he llo.sh", b"echo\n")})
        assert bad_name.status_code == 422
        assert "hello.sh" in c.get(f"/devices/{did}/liveresponse").text
        assert c.post(f"/liveresponse/{sid}/close", data={"csrf": csrf}).status_code == 303
        assert "Start session" in c.get(f"/devices/{did}/liveresponse").text
        assert c.post(f"/liveresponse/{sid}/command", data={"csrf": csrf, "line": "processes"}).status_code == 409
    with admin(server) as c:
        actions = {e["action"] for e in c.get("/api/audit").json()["value"]}
        assert {"liveresponse.session.start", "liveresponse.session.close", "liveresponse.library.put"} <= actions
