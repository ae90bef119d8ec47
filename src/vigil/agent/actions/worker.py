"""The action worker: long-polls for signed commands, verifies them, runs one at a time, reports back."""

from __future__ import annotations

import contextlib
import logging
import queue
import shutil
import threading
from collections.abc import Callable
from typing import Any

from pydantic import ValidationError

from vigil.agent.actions import isolation, restrict
from vigil.agent.actions.base import ActionContext, ActionError, ActionFailed, ActionSettings, CommandRefused, Outcome
from vigil.agent.actions.guard import SEEN_FILE, CommandGuard, SeenCommands
from vigil.agent.actions.outbox import ResultOutbox
from vigil.agent.actions.registry import ActionRegistry, default_registry
from vigil.agent.clock import Clock
from vigil.agent.errors import ServerRejected
from vigil.agent.identity import Identity
from vigil.agent.transport import AgentTransport, ServerUnavailable
from vigil.wire import MAX_POLL_SECONDS, ActionResult, SignedCommand

log = logging.getLogger(__name__)
EventSink = Callable[[str, dict[str, Any]], None]
REPORT_ATTEMPTS = 6
# How often reports that could not be delivered (now or before a restart) are tried again.
RESEND_SECONDS = 30.0


class ActionWorker:
    """One thread; commands also arrive with heartbeats (``submit``), and each id is run at most once."""

    def __init__(
        self, identity: Identity, transport: AgentTransport, clock: Clock, settings: ActionSettings,
        event: EventSink, registry: ActionRegistry | None = None,
    ) -> None:
        self._transport = transport
        self._registry = registry if registry is not None else default_registry()
        self._seen = SeenCommands(settings.state_dir / SEEN_FILE)
        self._outbox = ResultOutbox(settings.state_dir / SEEN_FILE)
        self._guard = CommandGuard(identity.action_public_key, identity.device_id, self._seen, clock)
        self.ctx = ActionContext(settings, clock, event=event)
        self._event = event
        self._inbox: queue.Queue[SignedCommand] = queue.Queue()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        # Like Defender's on reboot, files put there by live response do not outlive the agent.
        shutil.rmtree(self.ctx.settings.work_dir, ignore_errors=True)
        self._restore_state()
        for name, target in (("vigil-actions-poll", self._poll), ("vigil-actions", self._run),
                             ("vigil-actions-resend", self._resend)):
            t = threading.Thread(target=target, name=name, daemon=True)
            t.start()
            self._threads.append(t)

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(5)
        restrict.stop_listener(self.ctx)
        self._seen.close()
        self._outbox.close()

    def submit(self, commands: list[SignedCommand]) -> None:
        for c in commands:
            self._inbox.put(c)

    def _restore_state(self) -> None:
        """Isolation and exec restriction survive agent restarts: re-apply what was in force."""
        for name, restore in (("isolation", isolation.restore), ("restriction", restrict.restore)):
            try:
                what = restore(self.ctx)
            except ActionError as e:
                log.error("could not re-apply %s at start: %s", name, e)
                continue
            if what:
                log.warning("re-applied %s at start: %s", name, what)

    def _poll(self) -> None:
        delay = 1.0
        while not self._stop.is_set():
            try:
                self.submit(self._transport.poll_commands(MAX_POLL_SECONDS).commands)
                delay = 1.0
            except (ServerUnavailable, ServerRejected) as e:
                log.debug("command poll failed: %s", e)
                self._stop.wait(delay)
                delay = min(delay * 2, 30.0)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                signed = self._inbox.get(timeout=0.5)
            except queue.Empty:
                continue
            self.handle(signed)

    def handle(self, signed: SignedCommand) -> ActionResult:
        cmd = signed.command
        log.info("received action %s (%s)", cmd.action_id, cmd.type)
        try:
            self._guard.check(signed)
        except CommandRefused as e:
            log.warning("refused action %s (%s): %s", cmd.action_id, cmd.type, e)
            self._event("ResponseActionRefused", {"ActionId": cmd.action_id, "ActionType": cmd.type,
                                                  "Reason": e.reason, "Detail": e.detail})
            return self._report(cmd.action_id, ActionResult(status="Failed", message=str(e), refused=e.reason))
        self._report(cmd.action_id, ActionResult(status="InProgress", message="accepted by the agent"))
        handler = self._registry.find(cmd.type)
        outcome: Outcome | None = None
        try:
            if handler is None:
                raise ActionFailed(f"this agent cannot run {cmd.type} actions")
            outcome = handler(self.ctx, cmd)
            if outcome.artifact is not None:
                self._upload(cmd.action_id, outcome)
            result = ActionResult(status="Succeeded", message=outcome.message[:4000], output=outcome.output)
        except (ActionError, OSError, ServerRejected) as e:  # reported to the analyst, never dropped
            log.error("action %s (%s) failed: %s", cmd.action_id, cmd.type, e)
            result = ActionResult(status="Failed", message=str(e)[:4000])
        finally:
            if outcome is not None and outcome.artifact is not None:
                with contextlib.suppress(FileNotFoundError):
                    outcome.artifact.unlink()
        self._event("ResponseAction" + result.status, {"ActionId": cmd.action_id, "ActionType": cmd.type,
                                                      "Parameters": _loggable(cmd.parameters),
                                                      "Message": result.message[:500]})
        return self._report(cmd.action_id, result)

    def _upload(self, action_id: str, outcome: Outcome) -> None:
        assert outcome.artifact is not None
        for attempt in range(REPORT_ATTEMPTS):
            try:
                self._transport.upload_artifact(action_id, outcome.artifact)
                return
            except ServerUnavailable as e:
                if attempt == REPORT_ATTEMPTS - 1:
                    raise ActionFailed(f"the result could not be uploaded: {e}") from e
                self._stop.wait(2 ** attempt)

    def _report(self, action_id: str, result: ActionResult) -> ActionResult:
        # Queued before the first attempt, so a report survives the agent stopping while it waits to be sent.
        text = self._outbox.put(action_id, result)
        for attempt in range(REPORT_ATTEMPTS):
            try:
                self._transport.report_result(action_id, result)
            except ServerUnavailable as e:
                if attempt == REPORT_ATTEMPTS - 1:
                    log.warning("could not report action %s (%s); kept for resending", action_id, e)
                    return result
                log.warning("could not report action %s (%s); retrying", action_id, e)
                self._stop.wait(2 ** attempt)
                continue
            except ServerRejected as e:
                log.error("server refused the report on action %s: %s", action_id, e)
            self._outbox.sent(action_id, text)
            break
        return result

    def _resend(self) -> None:
        while not self._stop.is_set():
            self.resend_pending()
            self._stop.wait(RESEND_SECONDS)

    def resend_pending(self) -> int:
        """Send queued reports, oldest first; returns how many are still unsent (the server is unreachable)."""
        pending = self._outbox.pending()
        for n, (action_id, text) in enumerate(pending):
            try:
                self._transport.report_result(action_id, ActionResult.model_validate_json(text))
            except ServerUnavailable as e:
                log.info("server unreachable; %d action report(s) wait for the next try: %s", len(pending) - n, e)
                return len(pending) - n
            except ServerRejected as e:  # e.g. the action is unknown to this server: resending cannot help
                log.error("server refused the queued report on action %s; dropped: %s", action_id, e)
            except ValidationError as e:
                log.error("queued report on action %s is unreadable; dropped: %s", action_id, e)
            self._outbox.sent(action_id, text)
        return 0


def _loggable(params: dict[str, Any]) -> dict[str, Any]:
    """Parameters for the DeviceEvents row, without the library file's bytes."""
    return {k: v for k, v in params.items() if k != "Content"}
