"""The portal's rule content page on a real server: rules and folders switched per device group (audited, and
what fires changes without a restart); a read-only analyst sees the page without its switches."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import httpx

from tests.integration.server.rbac_support import PASSWORD, admin, make_user
from tests.support import VigilServer, enroll_raw, post_batch, process_event
from tests.unit.content.test_store import NC, _release
from vigil.content.store import ContentStore, content_root


@contextmanager
def _portal(server: VigilServer, username: str, password: str) -> Iterator[httpx.Client]:
    with server.client() as c:
        c.get("/login")
        r = c.post("/login", data={"username": username, "password": password, "csrf": c.cookies["vigil_csrf"]})
        assert r.status_code in (200, 303), r.text
        yield c


def _nc_fires(server: VigilServer, device: dict[str, str], seq: int) -> bool:
    event = process_event(device["device_id"], seq, FileName="nc", FolderPath="/usr/bin/nc",
                          ProcessCommandLine="nc -lvp 4444")
    assert post_batch(server, device["credential"], [event]).status_code == 200
    with admin(server) as c:
        alerts = c.get("/api/alerts", params={"machineId": device["device_id"]}).json()["value"]
    return any(a["detectorId"] == NC for a in alerts)


def _eventually(check: Callable[[], bool], what: str) -> None:
    """The live rule sets are rebuilt in the background after a change: wait for it (a few seconds)."""
    deadline = time.monotonic() + 30
    while not check():
        assert time.monotonic() < deadline, what
        time.sleep(0.3)


def _device(server: VigilServer, name: str, group: str | None = None) -> dict[str, str]:
    body = {"group": group} if group else {}
    return dict(enroll_raw(server, server.onboarding_package(**body)["token"], name).json())


def test_switching_a_folder_off_for_a_group_on_the_page_changes_what_fires(sqlite_server: VigilServer) -> None:
    server = sqlite_server
    store = ContentStore(content_root(server.data_dir))
    store.import_release(_release(server.data_dir / "release-src"))
    with admin(server) as c:
        assert c.put("/api/machinegroups/web", json={}).status_code == 200
    web = _device(server, "web-01", "web")
    make_user(server, "ann")  # read-only
    with _portal(server, "ann", PASSWORD) as c:
        html = c.get("/content").text
        assert 'id="rules"' in html and NC in html and "sigmahq" in html
        assert "/content/switch" not in html  # no switches for a read-only analyst
        assert c.post("/content/switch", data={"target": NC, "state": "off", "csrf": c.cookies["vigil_csrf"]}
                      ).status_code == 403
    seq = iter(range(1, 1000))
    with _portal(server, "admin", server.admin_password) as c:
        # The server started before the import: a first change rebuilds its rule sets with the store's rules.
        r = c.post("/content/switch", data={"target": NC, "state": "on", "csrf": c.cookies["vigil_csrf"]})
        assert r.status_code == 303
        _eventually(lambda: _nc_fires(server, web, next(seq)), "nc fires on web-01 once the store's rules run")
        page = c.get("/content", params={"group": "web"}).text
        assert "/content/switch" in page and "broken.yml" in page  # the rule that did not load, with its place
        assert c.post("/content/switch", data={"target": "sigmahq/rules/linux/net", "state": "off",
                                               "group": "web", "csrf": "forged"}).status_code == 403
        r = c.post("/content/switch", data={"target": "sigmahq/rules/linux/net", "state": "off", "group": "web",
                                            "csrf": c.cookies["vigil_csrf"]})
        assert r.status_code == 303 and "group=web" in r.headers["location"]
        assert "Switched folder sigmahq/rules/linux/net off for device group web" in c.get(r.headers["location"]).text
        bad = c.post("/content/switch", data={"target": "nope", "state": "off", "csrf": c.cookies["vigil_csrf"]})
        assert "neither a rule id nor a folder" in c.get(bad.headers["location"]).text
    assert {e.rule_id: e.enabled for e in store.entries("web")}[NC] is False
    with admin(server) as c:
        entry = c.get("/api/audit", params={"action": "content.switch"}).json()["value"][0]
        assert entry["actor"] == "admin" and entry["target_id"] == "sigmahq/rules/linux/net"
        assert entry["after"] == {"enabled": False, "group": "web"}
    # Without a restart: a device of the web group no longer raises it; one of the default group still does.
    office = _device(server, "office-01")
    _eventually(lambda: _nc_fires(server, office, next(seq)), "nc fires on office-01")
    web2 = _device(server, "web-02", "web")
    time.sleep(2)  # the rebuild after the folder switch has long finished: web-02 must see the folder off
    assert not _nc_fires(server, web2, next(seq))
