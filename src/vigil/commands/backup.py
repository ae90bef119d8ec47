"""`vigil backup`: create, verify and restore an encrypted archive of the server's store, keys and settings."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from vigil.commands._common import CommandError, DataDir
from vigil.commands._common import settings_for as _settings
from vigil.config import data_dir_from_env
from vigil.core.clock import SystemClock
from vigil.deploy.backup import create_backup, restore_backup, verify_backup, whoami
from vigil.deploy.backup_archive import BackupError, Manifest

PASSPHRASE_ENV = "VIGIL_BACKUP_PASSPHRASE"
app = typer.Typer(help="Back up and restore the server: store, CA and keys, settings.", no_args_is_help=True)
console = Console(stderr=True, soft_wrap=True)

PassphraseFile = Annotated[
    Path | None,
    typer.Option("--passphrase-file", help=f"file whose first line is the passphrase (else ${PASSPHRASE_ENV}, "
                                           "else a prompt)"),
]


class Output(StrEnum):
    TABLE = "table"
    JSON = "json"


def _progress(message: str) -> None:
    console.print(f"[dim]…[/] {message}")


def _passphrase(path: Path | None, *, confirm: bool) -> bytes:
    if path is not None:
        try:
            text = path.read_text().splitlines()
        except OSError as e:
            raise CommandError(f"--passphrase-file {path}: {e.strerror}") from None
        if not text or not text[0]:
            raise CommandError(f"--passphrase-file {path}: the first line is empty")
        return text[0].encode()
    if os.environ.get(PASSPHRASE_ENV):
        return os.environ[PASSPHRASE_ENV].encode()
    if not sys.stdin.isatty():
        raise CommandError(f"no passphrase: give --passphrase-file or set {PASSPHRASE_ENV}")
    return str(typer.prompt("Backup passphrase", hide_input=True, confirmation_prompt=confirm)).encode()


@contextmanager
def _backup_errors() -> Iterator[None]:
    try:
        yield
    except BackupError as e:
        raise CommandError(str(e)) from None


def _summary(manifest: Manifest, sha256: str) -> dict[str, object]:
    return {
        "format": manifest.format, "vigil_version": manifest.vigil_version,
        "created_at": manifest.created_at.isoformat(), "created_by": manifest.created_by, "host": manifest.host,
        "store_kind": manifest.store_kind, "schema_revision": manifest.schema_revision,
        "telemetry_rows": manifest.telemetry_rows, "telemetry_counts": manifest.telemetry_counts,
        "files": [{"name": f.name, "size": f.size, "sha256": f.sha256} for f in manifest.files],
        "sha256": sha256,
    }


@app.command()
def create(
    output: Annotated[Path, typer.Option("--output", "-o", help="the archive to write (must not exist)")],
    data_dir: DataDir = None,
    passphrase_file: PassphraseFile = None,
) -> None:
    """Write one encrypted archive of the store (consistent while the server runs), the data dir and settings."""
    settings = _settings(data_dir)
    passphrase = _passphrase(passphrase_file, confirm=True)
    with _backup_errors():
        report = create_backup(settings, output, passphrase, clock=SystemClock(), progress=_progress, actor=whoami())
    console.print(f"Backup {output}: {report.manifest.telemetry_rows} telemetry rows, schema "
                  f"{report.manifest.schema_revision}, SHA-256 {report.sha256}")


@app.command()
def verify(
    archive: Annotated[Path, typer.Argument(help="the archive to check")],
    passphrase_file: PassphraseFile = None,
    output: Annotated[Output, typer.Option("--output", help="table or json (on stdout)")] = Output.TABLE,
) -> None:
    """Check every checksum and the manifest, that everything decrypts, and that the store copy opens."""
    passphrase = _passphrase(passphrase_file, confirm=False)
    with _backup_errors():
        verified = verify_backup(archive, passphrase, progress=_progress)
    summary = {"ok": True, **_summary(verified.manifest, verified.sha256)}
    if output is Output.JSON:
        typer.echo(json.dumps(summary, indent=2))
        return
    m = verified.manifest
    typer.echo(f"{archive}: OK\n  written {m.created_at:%Y-%m-%d %H:%M:%S} UTC by {m.created_by} (Vigil "
               f"{m.vigil_version})\n  store {m.store_kind} at schema {m.schema_revision}, "
               f"{m.telemetry_rows} telemetry rows\n  {len(m.files)} files, SHA-256 {verified.sha256}")
    for table, n in sorted(m.telemetry_counts.items()):
        if n:
            typer.echo(f"    {table:<28} {n}")


@app.command()
def restore(
    archive: Annotated[Path, typer.Argument(help="the archive to restore")],
    data_dir: DataDir = None,
    database_url: Annotated[str | None, typer.Option(
        "--database-url", help="restore the store into this (empty) database instead of the one in the settings",
    )] = None,
    force: Annotated[bool, typer.Option("--force", help="restore into a non-empty data dir or database")] = False,
    passphrase_file: PassphraseFile = None,
) -> None:
    """Restore onto a fresh data dir: `vigil server` then runs with the same CA, keys, settings and store."""
    target = data_dir_from_env(data_dir)
    passphrase = _passphrase(passphrase_file, confirm=False)
    with _backup_errors():
        report = restore_backup(
            archive, passphrase, target, database_url=database_url, force=force, clock=SystemClock(),
            progress=_progress, actor=whoami(),
        )
    console.print(f"Restored {archive} into {target} ({sum(report.counts.values())} telemetry rows). "
                  f"Start it with: vigil server --data-dir {target}")
