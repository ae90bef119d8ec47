"""Antivirus scan: the hook the next-generation protection engine will fill; until then, honestly not available."""

from __future__ import annotations

from vigil.agent.actions.base import ActionContext, ActionFailed, Outcome
from vigil.wire import ActionCommand


def _scan(ctx: ActionContext, cmd: ActionCommand) -> Outcome:
    raise ActionFailed(f"{cmd.parameters.get('ScanType', 'Quick')} antivirus scan is not available: this agent has"
                       " no antivirus engine yet (next-generation protection is not built); nothing was scanned")


HANDLERS = {"RunAntiVirusScan": _scan}
