"""Response action handlers by unique type name; registering a type twice raises."""

from __future__ import annotations

from collections.abc import Iterator

from vigil.agent.actions.base import ActionHandler, DuplicateAction


class ActionRegistry:
    def __init__(self) -> None:
        self._handlers: dict[str, ActionHandler] = {}

    def register(self, name: str, handler: ActionHandler) -> None:
        if name in self._handlers:
            raise DuplicateAction(f"a handler for action type {name!r} is already registered")
        self._handlers[name] = handler

    def get(self, name: str) -> ActionHandler | None:
        return self._handlers.get(name)

    def __iter__(self) -> Iterator[str]:
        return iter(self._handlers)


def default_registry() -> ActionRegistry:
    """Every action this agent can run; imported here so a missing module fails loudly at start."""
    from vigil.agent.actions import isolation, kill, liveresponse, package, quarantine, restrict, scan

    reg = ActionRegistry()
    for module in (isolation, kill, quarantine, package, restrict, scan, liveresponse):
        for name, handler in module.HANDLERS.items():
            reg.register(name, handler)
    return reg
