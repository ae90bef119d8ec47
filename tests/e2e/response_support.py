"""Helpers for response-action tests: start actions through the API and wait for their outcome."""

from __future__ import annotations

from typing import Any

import httpx

from tests.e2e.agent_support import wait_for

DONE = ("Succeeded", "Failed", "TimeOut", "Canceled")


def start(c: httpx.Client, device_id: str, route: str, **body: Any) -> dict[str, Any]:
    r = c.post(f"/api/machines/{device_id}/{route}", json={"Comment": f"test: {route}", **body})
    assert r.status_code == 201, r.text
    return dict(r.json())


def finished(c: httpx.Client, action_id: str, timeout: float = 60) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        a = c.get(f"/api/machineactions/{action_id}").json()
        return a if a["status"] in DONE else None

    return dict(wait_for(done, timeout, f"machine action {action_id} to finish"))
