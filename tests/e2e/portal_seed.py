"""A seeded store for the portal's browser tests: devices enrolled through the agent API, their telemetry posted
through it, and alerts recorded with the store's own function (the path detection takes), dated as the test needs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from playwright.sync_api import Page

from tests.support import VigilServer, enroll_raw
from vigil.config import load_settings
from vigil.store import db
from vigil.store.alerts import NewHit, record_hit


def sign_in(page: Page, username: str, password: str) -> None:
    page.goto("/login")
    page.get_by_label("User name").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()


def enroll(server: VigilServer, hostnames: list[str]) -> list[dict[str, str]]:
    pkg = server.onboarding_package(expires="1h", uses=len(hostnames))
    out = []
    for name in hostnames:
        r = enroll_raw(server, pkg["token"], hostname=name)
        assert r.status_code == 200, r.text
        out.append(dict(r.json()))
    return out


def alerts(server: VigilServer, specs: list[tuple[str, str, str, int]], evidence: dict[str, Any] | None = None,
           ) -> None:
    """One alert per (device id, rule title, severity, days ago)."""
    engine = db.make_engine(load_settings(server.data_dir).db_url)
    now = datetime.now(UTC)
    try:
        with engine.begin() as conn:
            for i, (device, title, severity, days_ago) in enumerate(specs):
                when = now - timedelta(days=days_ago, minutes=i)
                hit = NewHit(device, f"seed-{title}", title, f"{title} (seeded)", severity, "Execution",
                             "CustomDetection", ["T1059"], when, evidence or {"Timestamp": when.isoformat()})
                record_hit(conn, hit, when)
    finally:
        engine.dispose()
