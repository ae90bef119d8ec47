"""The `vigil` command: the one place that turns errors into exit codes and messages."""

from __future__ import annotations

import sys

import typer

from vigil.commands import plan as plan_cmds
from vigil.commands import rules as rules_cmds
from vigil.commands import server as server_cmds
from vigil.commands import triage as triage_cmds
from vigil.commands.agent import app as agent_app
from vigil.config import SettingsError

app = typer.Typer(
    help="Vigil: open-source endpoint detection and response.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.command()(server_cmds.setup)
app.command()(server_cmds.server)
app.command()(server_cmds.up)
app.command("onboarding-package")(server_cmds.onboarding_package)
app.command()(server_cmds.offboard)
app.add_typer(server_cmds.docs_app, name="docs")
app.add_typer(agent_app, name="agent")
app.command("triage")(triage_cmds.app)
app.add_typer(rules_cmds.app, name="rules")
app.add_typer(plan_cmds.app, name="plan")

# Errors a user can act on; anything else is a bug and keeps its traceback.
USER_ERRORS: tuple[type[Exception], ...] = (server_cmds.CommandError, SettingsError)


def main() -> None:
    try:
        app()
    except USER_ERRORS as e:
        print(f"vigil: error: {e}", file=sys.stderr)
        sys.exit(2)
