"""Action results the server did not acknowledge are kept in actions.db and sent again after a restart."""

from __future__ import annotations

import secrets
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from vigil.agent.actions import worker as worker_module
from vigil.agent.actions.base import ActionContext, ActionSettings, Outcome
from vigil.agent.actions.guard import SEEN_FILE
from vigil.agent.actions.outbox import ResultOutbox
from vigil.agent.actions.registry import ActionRegistry
from vigil.agent.actions.worker import ActionWorker
from vigil.agent.errors import ServerRejected
from vigil.agent.identity import Identity
from vigil.agent.transport import ServerUnavailable
from vigil.wire import ActionCommand, ActionResult, CommandPoll, SignedCommand, public_key_text, sign_command

KEY = Ed25519PrivateKey.generate()


class _Clock:
    def now(self) -> datetime:
        return datetime.now(UTC)

    def monotonic(self) -> float:
        return time.monotonic()


class _Transport:
    """Records reports; ``down`` makes every report fail as if the server were unreachable."""

    def __init__(self, down: bool = False, reject: frozenset[str] = frozenset()) -> None:
        self.down, self.reject = down, reject
        self.results: list[tuple[str, ActionResult]] = []

    def poll_commands(self, wait: float) -> CommandPoll:
        time.sleep(0.05)
        return CommandPoll()

    def report_result(self, action_id: str, result: ActionResult) -> None:
        if self.down:
            raise ServerUnavailable("connection refused")
        if action_id in self.reject:
            raise ServerRejected(404, "not_found", "no such action", "action_id", "POST result")
        self.results.append((action_id, result))

    def upload_artifact(self, action_id: str, file: Path) -> None:
        raise AssertionError("no artifacts here")


def _worker(state: Path, transport: _Transport) -> ActionWorker:
    reg = ActionRegistry()

    def echo(ctx: ActionContext, cmd: ActionCommand) -> Outcome:
        return Outcome("echoed", {"x": cmd.parameters["x"]})

    reg.register("Echo", echo)
    identity = Identity("dev-1", "vgd_x", "https://127.0.0.1:1", "", "", "now", action_public_key=public_key_text(KEY))
    return ActionWorker(identity, transport, _Clock(), ActionSettings(state, "https://127.0.0.1:1"),  # type: ignore[arg-type]
                        lambda _a, _f: None, reg)


def _signed() -> SignedCommand:
    now = datetime.now(UTC)
    return sign_command(KEY, ActionCommand(action_id=secrets.token_hex(8), device_id="dev-1", type="Echo",
                                           parameters={"x": 7}, issued_at=now, expires_at=now + timedelta(hours=1),
                                           nonce=secrets.token_hex(16)))


def _wait(pred: object, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if callable(pred) and pred():
            return True
        time.sleep(0.05)
    return False


@pytest.fixture(autouse=True)
def _one_attempt(monkeypatch: pytest.MonkeyPatch) -> None:
    # The real agent retries for about a minute; one attempt is enough to leave a report unsent here.
    monkeypatch.setattr(worker_module, "REPORT_ATTEMPTS", 1)


def test_a_result_the_server_never_got_is_sent_after_the_agent_restarts(tmp_path: Path) -> None:
    down = _Transport(down=True)
    first = _worker(tmp_path, down)
    signed = _signed()
    assert first.handle(signed).status == "Succeeded"
    first.stop()  # the agent stops (or crashes) with the report still unsent

    outbox = ResultOutbox(tmp_path / SEEN_FILE)
    queued = outbox.pending()
    outbox.close()
    # The final status superseded "InProgress": only one report per action waits.
    assert [(a, ActionResult.model_validate_json(t).status) for a, t in queued] == [
        (signed.command.action_id, "Succeeded")]

    up = _Transport()
    second = _worker(tmp_path, up)
    second.start()
    try:
        assert _wait(lambda: up.results), "the queued report was not resent at start"
        assert [(a, r.status, r.message, r.output) for a, r in up.results] == [
            (signed.command.action_id, "Succeeded", "echoed", {"x": 7})]
        # The command itself is not run again: its id is still remembered in the same database.
        assert second.handle(signed).refused == "replay"
    finally:
        second.stop()

    third_transport = _Transport()
    third = _worker(tmp_path, third_transport)
    try:
        assert third.resend_pending() == 0
        assert third_transport.results == []  # acknowledged reports are not sent again
    finally:
        third.stop()


def test_an_unreachable_server_keeps_reports_in_order_and_a_refused_report_is_dropped(tmp_path: Path) -> None:
    down = _Transport(down=True)
    w = _worker(tmp_path, down)
    try:
        commands = [_signed() for _ in range(3)]
        for c in commands:
            assert w.handle(c).status == "Succeeded"
        ids = [c.command.action_id for c in commands]
        assert w.resend_pending() == 3  # still unreachable: nothing is lost
        w._transport = _Transport(reject=frozenset({ids[1]}))  # type: ignore[assignment]
        assert w.resend_pending() == 0
        assert [a for a, _ in w._transport.results] == [ids[0], ids[2]]  # type: ignore[attr-defined]
        assert w.resend_pending() == 0  # the refused one was dropped, not retried forever
    finally:
        w.stop()


def test_a_newer_report_queued_while_an_older_one_is_sent_is_kept(tmp_path: Path) -> None:
    outbox = ResultOutbox(tmp_path / SEEN_FILE)
    try:
        older = outbox.put("a-1", ActionResult(status="InProgress", message="accepted"))
        newer = outbox.put("a-1", ActionResult(status="Succeeded", message="done"))
        outbox.sent("a-1", older)  # the acknowledgement of the older report must not delete the newer one
        assert outbox.pending() == [("a-1", newer)]
        outbox.sent("a-1", newer)
        assert outbox.pending() == []
    finally:
        outbox.close()
