"""/api/docs (Swagger UI) and /api/redoc (ReDoc) in a browser that can reach nothing but the Vigil server."""

from __future__ import annotations

import pytest
from playwright.sync_api import Browser, Route, expect

from tests.support import VigilServer

pytestmark = pytest.mark.browser


def test_api_docs_work_offline(sqlite_server: VigilServer, chromium: Browser) -> None:
    base = sqlite_server.url
    context = chromium.new_context(base_url=base, viewport={"width": 1280, "height": 900})
    outside: list[str] = []

    def only_vigil(route: Route) -> None:  # air-gapped: every other origin is cut off
        if route.request.url.startswith(base) or route.request.url.startswith(("data:", "blob:")):
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    context.route("**/*", only_vigil)
    page = context.new_page()
    violations: list[str] = []
    page.on("console", lambda m: violations.append(m.text) if "Content Security Policy" in m.text else None)
    try:
        page.goto("/api/docs")
        expect(page.locator(".swagger-ui .info .title")).to_contain_text("Vigil")
        expect(page.locator(".opblock-summary-path", has_text="/api/machines").first).to_be_visible()

        page.goto("/api/redoc")
        expect(page.get_by_role("heading", name="Vigil").first).to_be_visible(timeout=20_000)
        expect(page.get_by_text("/api/machines").first).to_be_attached()
    finally:
        context.close()
    assert outside == [], f"the docs reached outside the server: {outside}"
    # ReDoc's "powered by" badge points at its vendor's site: the page's policy refuses it, nothing else is refused.
    assert [v for v in violations if "redoc/logo-mini.svg" not in v] == []
