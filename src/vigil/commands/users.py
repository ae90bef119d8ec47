"""`vigil users`: local accounts from the console (list, add, disable, enable, reset a password), audited."""

from __future__ import annotations

import json
import sys
from enum import StrEnum
from typing import Annotated

import typer
from rich.console import Console

from vigil.app import users as app_users
from vigil.app.ports import UserSummary
from vigil.commands._common import CommandError, DataDir, local_principal, local_store, settings_for, translated
from vigil.core.clock import SystemClock
from vigil.core.passwords import PasswordPolicy

app = typer.Typer(help="Users: list the accounts, add one, disable or enable one, reset a password.",
                  no_args_is_help=True)
console = Console(stderr=True)


class Output(StrEnum):
    TABLE = "table"
    JSON = "json"


OutputOpt = Annotated[Output, typer.Option("--output", help="table or json (on stdout)")]
PasswordStdin = Annotated[bool, typer.Option(
    "--password-stdin", help="read the password from the first line of stdin instead of asking for it")]


def _json(u: UserSummary) -> dict[str, object]:
    return {"username": u.username, "role": u.role, "email": u.email, "source": u.source, "disabled": u.disabled,
            "userGroups": list(u.user_groups)}


def _emit(users: list[UserSummary], output: Output) -> None:
    if output is Output.JSON:
        print(json.dumps([_json(u) for u in users], indent=2))
        return
    for u in users:
        state = "disabled" if u.disabled else "active"
        print(f"{u.username:<24} {u.role:<12} {state:<9} {u.source:<6} {u.email or ''}")


def _password(from_stdin: bool) -> str:
    """Never a command-line argument: it would sit in the shell history and the process list."""
    if from_stdin:
        line = sys.stdin.readline().rstrip("\r\n")
        if not line:
            raise CommandError("--password-stdin: stdin held no password")
        return line
    return str(typer.prompt("Password", hide_input=True, confirmation_prompt=True))


def _policy(org_name: str) -> PasswordPolicy:
    from vigil.server.password_strength import password_policy  # the server's own policy, its blocklist included

    return password_policy(org_name)


@app.command("list")
def list_(data_dir: DataDir = None, output: OutputOpt = Output.TABLE) -> None:
    """Every account, disabled ones too."""
    settings = settings_for(data_dir)
    with local_store(settings) as store, translated():
        found = app_users.list_users(store, local_principal())
    _emit(found, output)
    if output is Output.TABLE:
        console.print(f"{len(found)} user(s).")


@app.command()
def add(
    username: Annotated[str, typer.Argument(help="the sign-in name (letters, digits, . _ @ -)")],
    role: Annotated[str, typer.Option(help="basic role: read-only or full-access")] = "read-only",
    email: Annotated[str | None, typer.Option(help="for single sign-on matching and notices")] = None,
    password_stdin: PasswordStdin = False, data_dir: DataDir = None, output: OutputOpt = Output.TABLE,
) -> None:
    """Add a local account; the password must pass the server's policy."""
    settings = settings_for(data_dir)
    password = _password(password_stdin)
    with local_store(settings) as store, translated():
        made = app_users.add_user(store, SystemClock(), local_principal(), _policy(settings.org_name), username,
                                  password, role, email)
    _emit([made], output)
    if output is Output.TABLE:
        console.print(f"User {made.username} added ({made.role}).")


def _set_disabled(username: str, disabled: bool, data_dir: DataDir, output: Output) -> None:
    settings = settings_for(data_dir)
    with local_store(settings) as store, translated():
        changed = app_users.set_disabled(store, SystemClock(), local_principal(), username, disabled)
    _emit([changed], output)
    if output is Output.TABLE:
        console.print(f"User {username} {'disabled and signed out everywhere' if disabled else 'enabled'}.")


@app.command()
def disable(username: Annotated[str, typer.Argument(help="the account")], data_dir: DataDir = None,
            output: OutputOpt = Output.TABLE) -> None:
    """Disable an account: it cannot sign in, and its sessions end at once."""
    _set_disabled(username, True, data_dir, output)


@app.command()
def enable(username: Annotated[str, typer.Argument(help="the account")], data_dir: DataDir = None,
           output: OutputOpt = Output.TABLE) -> None:
    """Enable a disabled account again."""
    _set_disabled(username, False, data_dir, output)


@app.command("reset-password")
def reset_password(
    username: Annotated[str, typer.Argument(help="the account")], password_stdin: PasswordStdin = False,
    data_dir: DataDir = None, output: OutputOpt = Output.TABLE,
) -> None:
    """Set a new password for a local account; every session of it is signed out."""
    settings = settings_for(data_dir)
    password = _password(password_stdin)
    with local_store(settings) as store, translated():
        found = app_users.reset_password(store, SystemClock(), local_principal(), _policy(settings.org_name),
                                         username, password)
    _emit([found], output)
    if output is Output.TABLE:
        console.print(f"Password of {username} reset; every session of it was signed out.")
