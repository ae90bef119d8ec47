"""What every command group shares: the data-dir option, settings, the local principal and the CLI error table."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer

from vigil.app import errors as app_errors
from vigil.app.ports import AuditRecord, HuntableStore, Store
from vigil.app.principal import Principal, local_cli, os_user
from vigil.app.stores import open_engine, sql_store
from vigil.config import Settings, data_dir_from_env, load_settings

DataDir = Annotated[Path | None, typer.Option(
    "--data-dir",
    help="Vigil's data directory (default $VIGIL_DATA_DIR, else ./var if `make up` set it up, else /var/lib/vigil)")]


class CommandError(Exception):
    """A user-facing failure of a command; the CLI prints it and exits with ``exit_code``."""

    def __init__(self, message: str, exit_code: int = 2) -> None:
        super().__init__(message)
        self.exit_code = exit_code


# The CLI's one error table: each domain error's exit code (2 stays "bad input", as for every other command).
CLI_EXIT_CODES: dict[type[app_errors.AppError], int] = {
    app_errors.InvalidInput: 2,
    app_errors.Ambiguous: 2,
    app_errors.NotFound: 3,
    app_errors.Forbidden: 4,
    app_errors.GateClosed: 5,
    app_errors.Refused: 5,
    app_errors.NotConfigured: 6,
}


def cli_error(e: app_errors.AppError) -> CommandError:
    code = next(v for k, v in CLI_EXIT_CODES.items() if isinstance(e, k))
    return CommandError(e.message + (f" (field: {e.field})" if e.field else ""), code)


@contextmanager
def translated() -> Iterator[None]:
    """Turn a service's refusal into the command's message and exit code."""
    try:
        yield
    except app_errors.AppError as e:
        raise cli_error(e) from None


def settings_for(data_dir: Path | None) -> Settings:
    d = data_dir_from_env(data_dir)
    if not (d / "vigil.toml").exists():
        raise CommandError(f"{d} is not set up yet; run `vigil setup --data-dir {d}` first")
    return load_settings(d)


def audit_server_change(data_dir: Path | None, action: str, target_type: str, target: str,
                        after: dict[str, object]) -> None:
    """Record a change a CLI verb made to the server's files (rule content, feeds) in the server's audit log as
    ``cli:user@host``. A data directory that is no set-up server (no vigil.toml) has no audit log."""
    from vigil.core.clock import SystemClock

    if not (data_dir_from_env(data_dir) / "vigil.toml").exists():
        return
    record = AuditRecord(local_principal().actor, action, target_type, target, after=after)
    with local_store(settings_for(data_dir)) as store, store.begin() as uow:
        uow.audit.append(record, SystemClock().now())


def whoami() -> str:
    """The OS user and host a CLI change is audited under: the CLI has no sign-in of its own."""
    return os_user()


def local_principal() -> Principal:
    """The operator at the console, audited as ``cli:user@host``, through the same services as everyone."""
    return local_cli()


def acting(store: Store, as_user: str | None) -> Principal:
    """The local principal, or, with ``--as USER``, the operator narrowed to that Vigil user's rights."""
    from vigil.app.users import acting_as

    who = local_principal()
    return who if as_user is None else acting_as(store, who, as_user)


AsUser = Annotated[str | None, typer.Option(
    "--as", help="act with this Vigil user's permissions and device groups (audited as you, as that user)")]


@contextmanager
def local_store(settings: Settings, migrate: bool = False, sign_actions: bool = False) -> Iterator[HuntableStore]:
    """The store of a local data directory, for the length of one command.

    ``sign_actions`` wires in the server's signing key, for commands that record response actions.
    """
    engine = open_engine(settings.db_url, migrate)
    issuer = None
    if sign_actions:
        from vigil.server.actions import signing_issuer

        issuer = signing_issuer(settings)
    try:
        yield sql_store(engine, issuer)
    finally:
        engine.dispose()
