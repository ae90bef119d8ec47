"""The `vigil` command: the one place that turns errors into exit codes and messages."""

from __future__ import annotations

import typer

app = typer.Typer(
    help="Vigil: open-source endpoint detection and response.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


def main() -> None:
    app()
