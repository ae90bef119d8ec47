"""A result the agent could not deliver reaches the real server after a restart; repeated reports change nothing."""

from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path

import pytest

from tests.e2e.response_support import start
from tests.support import VigilServer, free_port
from vigil.agent.actions import worker as worker_module
from vigil.agent.actions.base import ActionContext, ActionSettings, Outcome
from vigil.agent.actions.registry import ActionRegistry
from vigil.agent.actions.worker import ActionWorker
from vigil.agent.clock import SystemClock
from vigil.agent.enroll import enroll
from vigil.agent.identity import Identity
from vigil.agent.transport import AgentTransport
from vigil.wire import ActionCommand, ActionResult


def _worker(identity: Identity, state: Path) -> tuple[ActionWorker, AgentTransport]:
    reg = ActionRegistry()

    def scan(ctx: ActionContext, cmd: ActionCommand) -> Outcome:
        return Outcome("scanned: clean", {"ScanType": cmd.parameters["ScanType"]})

    reg.register("RunAntiVirusScan", scan)
    transport = AgentTransport(identity, 5)
    return ActionWorker(identity, transport, SystemClock(), ActionSettings(state, identity.server_url),
                        lambda _a, _f: None, reg), transport


def test_a_result_queued_while_the_server_was_unreachable_is_delivered_once_after_restart(
    sqlite_server: VigilServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(worker_module, "REPORT_ATTEMPTS", 1)  # give up at once instead of after a minute
    package = tmp_path / "package.json"
    package.write_text(json.dumps(sqlite_server.onboarding_package()))
    state = tmp_path / "agent"
    state.mkdir()
    identity = enroll(package, state)
    with sqlite_server.client(sqlite_server.admin_token()) as admin:
        action = start(admin, identity.device_id, "runAntiVirusScan", ScanType="Quick")["id"]
        poller = AgentTransport(identity, 5)
        try:
            signed = poller.poll_commands(1).commands
        finally:
            poller.close()
        assert [s.command.action_id for s in signed] == [action]

        # The agent runs the command but cannot reach the server to report it (nothing listens there).
        offline = replace(identity, server_url=f"https://127.0.0.1:{free_port()}")
        first, t1 = _worker(offline, state)
        assert first.handle(signed[0]).status == "Succeeded"
        first.stop()
        t1.close()
        assert admin.get(f"/api/machineactions/{action}").json()["status"] == "Pending"

        second, t2 = _worker(identity, state)
        second.start()
        try:
            deadline = time.monotonic() + 30
            while (a := admin.get(f"/api/machineactions/{action}").json())["status"] == "Pending":
                assert time.monotonic() < deadline, "the queued result never reached the server"
                time.sleep(0.2)
            assert (a["status"], a["resultMessage"], a["output"]) == (
                "Succeeded", "scanned: clean", {"ScanType": "Quick"}), a

            # The server is idempotent: the same report again, or a contradicting late one, is accepted
            # (the agent stops resending) and leaves the finished action as it was.
            t2.report_result(action, ActionResult(status="Succeeded", message="scanned: clean"))
            t2.report_result(action, ActionResult(status="Failed", message="late and wrong"))
            assert admin.get(f"/api/machineactions/{action}").json() == a
            reports = admin.get("/api/audit", params={"action": "machineaction.result"}).json()["value"]
            assert [r["after"]["reported"] for r in reports if r["target_id"] == action] == [
                "Failed", "Succeeded", "Succeeded"]
            assert second.resend_pending() == 0
        finally:
            second.stop()
            t2.close()
