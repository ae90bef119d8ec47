"""The `vigil` command: the one place that turns errors into exit codes and messages.

Commands are registered by name and imported only when run (or listed by `--help`): `vigil triage` starts
without the server's, agent's and plan's dependencies.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any

import typer
from typer.core import TyperGroup

# command name -> (module, attribute, whether the attribute is a sub-app), in help order
_COMMANDS: dict[str, tuple[str, str, bool]] = {
    "setup": ("vigil.commands.server", "setup", False),
    "server": ("vigil.commands.server", "server", False),
    "up": ("vigil.commands.server", "up", False),
    "worker": ("vigil.commands.worker", "worker", False),
    "onboarding-package": ("vigil.commands.server", "onboarding_package", False),
    "offboard": ("vigil.commands.server", "offboard", False),
    "devices": ("vigil.commands.devices", "app", True),
    "users": ("vigil.commands.users", "app", True),
    "audit": ("vigil.commands.audit", "app", True),
    "docs": ("vigil.commands.server", "docs_app", True),
    "agent": ("vigil.commands.agent", "app", True),
    "triage": ("vigil.commands.triage", "app", False),
    "rules": ("vigil.commands.rules", "app", True),
    "plan": ("vigil.commands.plan", "app", True),
    "backup": ("vigil.commands.backup", "app", True),
    "tvm": ("vigil.commands.tvm", "app", True),
    "av": ("vigil.commands.av", "app", True),
    "hunt": ("vigil.commands.hunt", "hunt", False),
    "detections": ("vigil.commands.detections", "app", True),
    "asr": ("vigil.commands.asr", "app", True),
    "indicators": ("vigil.commands.indicators", "app", True),
    "investigations": ("vigil.commands.investigations", "app", True),
    "integrations": ("vigil.commands.integrations", "app", True),
}


def _load(name: str) -> Any:  # a click command (typer's vendored click)
    module, attribute, is_app = _COMMANDS[name]
    target: Any = getattr(importlib.import_module(module), attribute)
    if is_app:
        command: Any = typer.main.get_group(target)
    else:
        single = typer.Typer()
        single.command(name)(target)
        command = typer.main.get_command(single)
    command.name = name
    return command


class _LazyGroup(TyperGroup):
    """A command group whose commands are imported on first use."""

    def list_commands(self, ctx: Any) -> list[str]:
        return list(_COMMANDS)

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        if cmd_name not in self.commands and cmd_name in _COMMANDS:
            self.add_command(_load(cmd_name), cmd_name)
        return self.commands.get(cmd_name)


app = typer.Typer(
    cls=_LazyGroup,
    help="Vigil: open-source endpoint detection and response.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


@app.callback()
def _root() -> None:
    """Vigil: open-source endpoint detection and response."""


def user_errors() -> tuple[type[Exception], ...]:
    """Errors a user can act on; anything else is a bug and keeps its traceback."""
    from vigil.commands._common import CommandError
    from vigil.config import SettingsError
    return (CommandError, SettingsError)


def main() -> None:
    try:
        app()
    except Exception as e:
        if isinstance(e, user_errors()):
            print(f"vigil: error: {e}", file=sys.stderr)
            sys.exit(getattr(e, "exit_code", 2))
        raise
