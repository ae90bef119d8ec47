"""The agent refuses unsigned, forged, foreign, stale and replayed commands, and reports each refusal."""

from __future__ import annotations

import base64
import secrets
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from vigil.agent.actions.base import ActionContext, ActionSettings, DuplicateAction, Outcome
from vigil.agent.actions.registry import ActionRegistry, default_registry
from vigil.agent.actions.worker import ActionWorker
from vigil.agent.identity import Identity
from vigil.core.actions import COMMAND_LIFETIME
from vigil.wire import (
    MAX_COMMAND_LIFETIME,
    ActionCommand,
    ActionResult,
    CommandLifetimeError,
    CommandPoll,
    SignedCommand,
    public_key_text,
    sign_command,
)

KEY = Ed25519PrivateKey.generate()
NOW = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)


class FixedClock:
    def now(self) -> datetime:
        return NOW

    def monotonic(self) -> float:
        return time.monotonic()


class FakeTransport:
    def __init__(self) -> None:
        self.results: list[tuple[str, ActionResult]] = []
        self.polls: list[list[SignedCommand]] = []

    def poll_commands(self, wait: float) -> CommandPoll:
        time.sleep(0.05)
        return CommandPoll(commands=self.polls.pop(0) if self.polls else [])

    def report_result(self, action_id: str, result: ActionResult) -> None:
        self.results.append((action_id, result))

    def upload_artifact(self, action_id: str, file: Path) -> None:
        raise AssertionError("no artifacts here")


def _identity(device: str = "dev-1") -> Identity:
    return Identity(device, "vgd_x", "https://127.0.0.1:1", "", "", "now", action_public_key=public_key_text(KEY))


def _command(device: str = "dev-1", issued: datetime = NOW, life: timedelta = timedelta(hours=1),
             kind: str = "Echo", action_id: str | None = None) -> ActionCommand:
    return ActionCommand(action_id=action_id or secrets.token_hex(8), device_id=device, type=kind,
                         parameters={"x": 1}, issued_at=issued, expires_at=issued + life, nonce=secrets.token_hex(16))


def _forged_with_server_key(cmd: ActionCommand) -> SignedCommand:
    """Signed with the server's key while skipping sign_command's lifetime check (a rogue or buggy signer)."""
    return SignedCommand(command=cmd, signature=base64.b64encode(KEY.sign(cmd.signing_bytes())).decode())


def _worker(tmp_path: Path, calls: list[str]) -> tuple[ActionWorker, FakeTransport]:
    reg = ActionRegistry()

    def echo(ctx: ActionContext, cmd: ActionCommand) -> Outcome:
        calls.append(cmd.action_id)
        return Outcome("done", {"x": cmd.parameters["x"]})

    reg.register("Echo", echo)
    t = FakeTransport()
    events: list[Any] = []
    w = ActionWorker(_identity(), t, FixedClock(), ActionSettings(tmp_path, "https://127.0.0.1:1"),  # type: ignore[arg-type]
                     lambda a, f: events.append((a, f)), reg)
    return w, t


def test_a_signed_fresh_command_for_this_device_runs_once(tmp_path: Path) -> None:
    calls: list[str] = []
    w, t = _worker(tmp_path, calls)
    signed = sign_command(KEY, _command())
    assert w.handle(signed).status == "Succeeded"
    assert [r.status for _, r in t.results] == ["InProgress", "Succeeded"]
    replay = w.handle(signed)
    assert replay.status == "Failed" and replay.refused == "replay"
    assert calls == [signed.command.action_id]


@pytest.mark.parametrize(("make", "reason"), [
    (lambda: SignedCommand(command=_command()), "unsigned"),
    (lambda: sign_command(Ed25519PrivateKey.generate(), _command()), "bad_signature"),
    (lambda: SignedCommand(command=_command().model_copy(update={"parameters": {"x": 2}}),
                           signature=sign_command(KEY, _command()).signature), "bad_signature"),
    (lambda: sign_command(KEY, _command(device="dev-2")), "other_device"),
    (lambda: sign_command(KEY, _command(issued=NOW - timedelta(hours=2))), "expired"),
    (lambda: sign_command(KEY, _command(issued=NOW + timedelta(hours=1))), "not_yet_valid"),
    # A far-future expiry, genuinely signed: refused for its lifetime although it has not expired.
    (lambda: _forged_with_server_key(_command(life=timedelta(days=3650))), "lifetime"),
    (lambda: _forged_with_server_key(_command(life=MAX_COMMAND_LIFETIME + timedelta(seconds=1))), "lifetime"),
    # Issued long ago and still valid now: the window is too wide even though "now" falls inside it.
    (lambda: _forged_with_server_key(_command(issued=NOW - timedelta(hours=30), life=timedelta(hours=31))),
     "lifetime"),
    (lambda: _forged_with_server_key(_command(life=timedelta(0))), "lifetime"),
    # An expired command whose expiry was pushed forward after signing: the signature no longer verifies.
    (lambda: _tampered_expiry(sign_command(KEY, _command(issued=NOW - timedelta(hours=2))),
                              NOW + timedelta(hours=1)), "bad_signature"),
])
def test_bad_commands_are_refused_and_reported(tmp_path: Path, make: Any, reason: str) -> None:
    calls: list[str] = []
    w, t = _worker(tmp_path, calls)
    signed = make()
    result = w.handle(signed)
    assert result.status == "Failed" and result.refused == reason
    assert t.results == [(signed.command.action_id, result)]
    assert calls == []


def _tampered_expiry(signed: SignedCommand, expires: datetime) -> SignedCommand:
    return signed.model_copy(update={"command": signed.command.model_copy(update={"expires_at": expires})})


def test_a_command_valid_for_exactly_the_maximum_runs(tmp_path: Path) -> None:
    calls: list[str] = []
    w, _ = _worker(tmp_path, calls)
    assert w.handle(sign_command(KEY, _command(life=MAX_COMMAND_LIFETIME))).status == "Succeeded"


def test_the_signer_refuses_a_lifetime_beyond_the_maximum() -> None:
    assert MAX_COMMAND_LIFETIME.total_seconds() == 24 * 3600  # the documented maximum
    assert max(COMMAND_LIFETIME.values()) <= MAX_COMMAND_LIFETIME  # what the server signs for each action type
    with pytest.raises(CommandLifetimeError, match="at most 1 day"):
        sign_command(KEY, _command(life=MAX_COMMAND_LIFETIME + timedelta(seconds=1)))
    with pytest.raises(CommandLifetimeError, match="not after issued_at"):
        sign_command(KEY, _command(life=-timedelta(minutes=1)))


def test_a_tampered_field_breaks_the_signature(tmp_path: Path) -> None:
    signed = sign_command(KEY, _command())
    moved = signed.model_copy(update={"command": signed.command.model_copy(update={"device_id": "dev-1 "})})
    calls: list[str] = []
    w, _ = _worker(tmp_path, calls)
    assert w.handle(moved).refused == "bad_signature"


def test_replays_are_refused_across_agent_restarts(tmp_path: Path) -> None:
    calls: list[str] = []
    w, _ = _worker(tmp_path, calls)
    signed = sign_command(KEY, _command())
    w.handle(signed)
    w.stop()
    w2, _ = _worker(tmp_path, calls)
    assert w2.handle(signed).refused == "replay"
    # A new action id reusing an old nonce is a replay too.
    again = sign_command(KEY, _command().model_copy(update={"nonce": signed.command.nonce}))
    assert w2.handle(again).refused == "replay"


def test_commands_from_polls_and_heartbeats_run_in_the_worker_thread(tmp_path: Path) -> None:
    calls: list[str] = []
    w, t = _worker(tmp_path, calls)
    first, second = sign_command(KEY, _command()), sign_command(KEY, _command())
    t.polls.append([first])
    w.start()
    try:
        w.submit([second])
        deadline = time.monotonic() + 5
        while len(calls) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        w.stop()
    assert sorted(calls) == sorted([first.command.action_id, second.command.action_id])
    assert threading.active_count() >= 1


def test_unknown_types_fail_and_duplicate_handlers_raise(tmp_path: Path) -> None:
    calls: list[str] = []
    w, _ = _worker(tmp_path, calls)
    result = w.handle(sign_command(KEY, _command(kind="Teleport")))
    assert result.status == "Failed" and "cannot run Teleport" in result.message
    reg = default_registry()
    assert {"Isolate", "Unisolate", "KillProcess", "StopAndQuarantineFile", "RestoreQuarantinedFile",
            "CollectInvestigationPackage", "RestrictCodeExecution", "UnrestrictCodeExecution", "RunAntiVirusScan",
            "LiveResponse"} <= set(reg)
    with pytest.raises(DuplicateAction):
        reg.register("Isolate", lambda ctx, cmd: Outcome(""))
