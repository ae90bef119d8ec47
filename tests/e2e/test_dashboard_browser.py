"""The dashboard, the portal's landing page, in Chromium over a seeded store: its tiles, its Chart.js charts
(served by Vigil itself: the browser reaches nothing else) and its top lists."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import Browser, Route, expect

from tests.e2e import portal_seed
from tests.support import VigilServer

pytestmark = pytest.mark.browser
DOCS = Path(__file__).resolve().parents[2] / "docs" / "portal"


def test_dashboard_charts_from_a_seeded_store(sqlite_server: VigilServer, chromium: Browser) -> None:
    server, base = sqlite_server, sqlite_server.url
    web, db_host = portal_seed.enroll(server, ["web-dash-01.corp.example", "db-dash-02.corp.example"])
    w, d = web["device_id"], db_host["device_id"]
    portal_seed.alerts(server, [
        (w, "Suspicious shell from web server", "High", 0), (w, "Suspicious shell from web server", "High", 2),
        (d, "Suspicious shell from web server", "High", 2), (w, "Credential file read", "Medium", 0),
        (d, "Credential file read", "Medium", 1), (d, "Rare binary executed", "Low", 5),
    ])
    context = chromium.new_context(base_url=base, viewport={"width": 1400, "height": 900})
    outside: list[str] = []

    def only_vigil(route: Route) -> None:
        if route.request.url.startswith(base):
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    context.route("**/*", only_vigil)
    page = context.new_page()
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    try:
        portal_seed.sign_in(page, "admin", server.admin_password)
        expect(page).to_have_url(f"{base}/")  # the dashboard is the landing page
        expect(page.get_by_role("heading", name="Dashboard")).to_be_visible()
        expect(page.locator("#tile-alerts .n")).to_have_text("6")
        expect(page.locator("#tile-alerts small")).to_contain_text("3 high · 2 medium · 1 low")
        expect(page.locator("#tile-devices .n")).to_have_text("2")
        expect(page.locator("#top-rules tbody tr").first).to_contain_text("Suspicious shell from web server")
        expect(page.locator("#top-rules tbody tr").first).to_contain_text("3")
        expect(page.locator("#top-devices tbody tr").first).to_contain_text("web-dash-01.corp.example")
        expect(page.locator("#open-incidents tbody tr").first).to_be_visible()

        # The charts were drawn by Chart.js with the store's numbers.
        page.wait_for_function("() => typeof Chart !== 'undefined' && Chart.getChart('chart-alerts')")
        series = page.evaluate("""() => Object.fromEntries(Chart.getChart('chart-alerts').data.datasets
            .map(s => [s.label, s.data.reduce((a, b) => a + b, 0)]))""")
        assert series == {"High": 3, "Medium": 2, "Low": 1, "Informational": 0}
        today = page.evaluate("() => Chart.getChart('chart-alerts').data.datasets.map(s => s.data.at(-1))")
        assert today == [1, 1, 0, 0]
        health = page.evaluate("() => Chart.getChart('chart-health').data.datasets[0].data.reduce((a,b)=>a+b,0)")
        assert health == 2
        painted = page.evaluate("""() => { const c = document.getElementById('chart-alerts');
            const px = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
            let n = 0; for (let i = 3; i < px.length; i += 4) if (px[i]) n++; return n; }""")
        assert painted > 1000  # bars and axes on the canvas, not an empty box
        DOCS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(DOCS / "dashboard.png"), full_page=True)

        page.locator("#tile-incidents").click()
        expect(page).to_have_url(f"{base}/incidents")
    finally:
        context.close()
    assert outside == []
    assert errors == []
