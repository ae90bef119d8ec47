"""ApplyProtectionPolicy: the device's ASR policy and indicators (vigil.asr.bundle), enforced by agent.protection."""

from __future__ import annotations

from vigil.agent.actions.base import ActionContext, ActionFailed, Outcome
from vigil.agent.protection import SERVICE, Protection
from vigil.wire import ActionCommand


def _apply(ctx: ActionContext, cmd: ActionCommand) -> Outcome:
    protection = ctx.services.get(SERVICE)
    if not isinstance(protection, Protection):
        raise ActionFailed("this agent runs without the protection service; the bundle was not applied")
    summary = protection.apply(cmd.parameters)
    return Outcome(f"protection bundle {summary['revision']} applied: {len(summary['blocked'])} address(es) "
                   f"blocked, {len(summary['audited'])} audited", summary)


HANDLERS = {"ApplyProtectionPolicy": _apply}
