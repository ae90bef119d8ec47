"""Response action handlers by unique type name; registering a type twice raises."""

from __future__ import annotations

from vigil.agent.actions.base import ActionError, ActionHandler, DuplicateAction
from vigil.core.registry import Registry


class ActionRegistry(Registry[ActionHandler]):
    def __init__(self) -> None:
        super().__init__("action type", duplicate=DuplicateAction, unknown=ActionError)


def default_registry() -> ActionRegistry:
    """Every action this agent can run; imported here so a missing module fails loudly at start."""
    from vigil.agent.actions import (
        isolation,
        kill,
        liveresponse,
        local_user,
        package,
        persistence_entry,
        protection,
        quarantine,
        restrict,
        scan,
        service,
    )

    reg = ActionRegistry()
    for module in (isolation, kill, quarantine, package, restrict, scan, liveresponse, protection,
                   persistence_entry, local_user, service):
        for name, handler in module.HANDLERS.items():
            reg.register(name, handler)
    return reg
