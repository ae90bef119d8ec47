"""The portal's hunting page on a real server: the schema browser, a query's grid paged, its CSV export, a refused
query's message, and the caller's device-group scope."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import quote

import httpx

from tests.integration.server.rbac_support import PASSWORD, admin, groups_a_and_b, make_user
from tests.integration.server.test_hunting import _enroll
from tests.integration.server.test_security import portal_login
from tests.support import VigilServer, post_batch, process_event
from vigil.core.rbac import Permission

QUERY = "DeviceProcessEvents | project DeviceName, ProcessId | order by ProcessId asc"


@contextmanager
def _signed_in(server: VigilServer, user: str, password: str) -> Iterator[httpx.Client]:
    with server.client() as c:
        assert portal_login(c, user, password).status_code == 303
        yield c


def test_the_hunting_page_runs_pages_exports_and_scopes(sqlite_server: VigilServer) -> None:
    server = sqlite_server
    with admin(server) as c:
        for host, base in (("a-web-01", 0), ("b-db-01", 1000)):
            dev = _enroll(server, c, host)
            rows = [process_event(dev["device_id"], i + 1, DeviceName=host, ProcessId=base + i) for i in range(60)]
            assert post_batch(server, dev["credential"], rows).status_code == 200
        groups_a_and_b(c)
        assert c.put("/api/roles/hunter", json={"permissions": [Permission.VIEW_DATA_SECOPS.value],
                                                "userGroups": ["ug-hunters"]}).status_code == 200
        assert c.post("/api/rbac/mode", json={"mode": "rbac"}).status_code == 200
    make_user(server, "alice", groups=("ug-a", "ug-hunters"))

    with _signed_in(server, "admin", server.admin_password) as c:
        blank = c.get("/hunting")
        assert blank.status_code == 200 and "DeviceProcessEvents" in blank.text and "ProcessCommandLine" in blank.text
        assert 'href="/hunting"' in blank.text  # in the nav
        first = c.get("/hunting", params={"query": QUERY})
        assert first.status_code == 200 and "120 row(s)" in first.text and "page 1 of 3" in first.text
        assert "<td>a-web-01</td><td>0</td>" in first.text and "<td>b-db-01</td>" not in first.text
        last = c.get("/hunting", params={"query": QUERY, "p": 3})
        assert "<td>b-db-01</td><td>1059</td>" in last.text and "<td>a-web-01</td>" not in last.text
        exported = c.get(f"/hunting/results.csv?query={quote(QUERY)}")
        assert exported.status_code == 200 and exported.headers["content-type"].startswith("text/csv")
        table = list(csv.reader(io.StringIO(exported.text)))
        assert table[0] == ["DeviceName", "ProcessId"] and len(table) == 121 and table[-1] == ["b-db-01", "1059"]
        bad = c.get("/hunting", params={"query": "DELETE FROM DeviceProcessEvents"})
        assert bad.status_code == 422 and "only SELECT" in bad.text

    with _signed_in(server, "alice", PASSWORD) as c:
        mine = c.get("/hunting", params={"query": QUERY})
        assert "60 row(s)" in mine.text and "b-db-01" not in mine.text
        assert "b-db-01" not in c.get(f"/hunting/results.csv?query={quote(QUERY)}").text
