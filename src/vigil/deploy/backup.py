"""Backups of a Vigil server: create, verify and restore an archive of its store, secrets and configuration."""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import socket
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import ParamSpec, TypeVar

from alembic.script import ScriptDirectory
from alembic.util import CommandError as AlembicCommandError

import vigil
from vigil.config import SETTINGS_FILE, Settings, load_settings
from vigil.core.clock import Clock
from vigil.deploy.backup_archive import (
    ArchiveDamaged,
    ArchiveReader,
    ArchiveWriter,
    BackupError,
    FileEntry,
    Manifest,
    archive_sha256,
)
from vigil.store import audit, db
from vigil.store import backup as store_backup
from vigil.store.audit import Change

Progress = Callable[[str], None]
DATA = "data/"
DATABASE = "database/"
# Not copied from the data dir: the live store (copied consistently instead), logs, the local agent's spool
# (a live SQLite file of its own; its unsent events are the agent's, not the server's), staging leftovers.
_SKIP_NAMES = re.compile(r"(^|/)([^/]*\.log(\.\d+)?|\.vigil-backup-[^/]*|\.vigil-restore-[^/]*|[^/]*\.partial)$")
_SKIP_AGENT = re.compile(r"^agent/spool\.db(-wal|-shm|-journal)?$")


@dataclass(frozen=True)
class BackupReport:
    path: Path
    sha256: str
    manifest: Manifest


@dataclass(frozen=True)
class RestoreReport:
    data_dir: Path
    database_url: str
    manifest: Manifest
    counts: dict[str, int]


P = ParamSpec("P")
R = TypeVar("R")


def whoami() -> str:
    """The OS user and host for audit records of command-line changes."""
    try:
        user = os.getlogin()
    except OSError:
        import pwd
        try:
            user = pwd.getpwuid(os.getuid()).pw_name
        except KeyError:
            user = str(os.getuid())
    return f"cli:{user}@{socket.gethostname()}"


def _data_files(settings: Settings) -> Iterator[tuple[str, Path]]:
    root = settings.data_dir
    store_files: set[Path] = set()
    if store_backup.store_kind(settings.db_url) == "sqlite":
        main = store_backup.sqlite_path(settings.db_url).resolve()
        store_files = {main, *(main.with_name(main.name + s) for s in ("-wal", "-shm", "-journal"))}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if not path.is_file() or path.is_symlink() or path.resolve() in store_files:
            continue
        if _SKIP_NAMES.search(rel) or _SKIP_AGENT.match(rel):
            continue
        yield rel, path


@contextmanager
def _staging(near: Path, prefix: str) -> Iterator[Path]:
    # Beside the archive or data dir rather than in /tmp: the store copy can be large and /tmp a small tmpfs.
    d = Path(tempfile.mkdtemp(prefix=prefix, dir=near))
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


def _store_errors(fn: Callable[P, R]) -> Callable[P, R]:
    """The store's backup errors become BackupError here, so the CLI maps one error type, not the store's."""

    @functools.wraps(fn)
    def wrapped(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except store_backup.StoreBackupError as e:
            raise BackupError(str(e)) from e

    return wrapped


@_store_errors
def create_backup(
    settings: Settings, output: Path, passphrase: bytes, *, clock: Clock, progress: Progress, actor: str,
) -> BackupReport:
    """Write one archive of the store (consistent while the server runs), the data dir's files and the settings."""
    if output.exists():
        raise BackupError(f"{output} already exists; choose another file name")
    if not output.parent.is_dir():
        raise BackupError(f"{output.parent} is not a directory")
    kind = store_backup.store_kind(settings.db_url)
    with _staging(output.parent, ".vigil-backup-") as staging:
        copy = store_backup.snapshot(settings.db_url, staging, progress)
        writer = ArchiveWriter(output, passphrase, staging)
        try:
            progress(f"encrypting the store copy ({copy.path.stat().st_size / 1e6:.1f} MB)")
            db_entry = writer.add(DATABASE + copy.path.name, copy.path, 0o600)
            for rel, path in _data_files(settings):
                progress(f"adding {rel}")
                writer.add(DATA + rel, path, path.stat().st_mode)
            manifest = Manifest(
                vigil_version=vigil.__version__, created_at=clock.now(), created_by=actor, host=socket.gethostname(),
                store_kind=kind,  # type: ignore[arg-type]  # store_kind() returns one of the two
                schema_revision=copy.revision, database_file=db_entry.name, telemetry_counts=copy.counts,
                kdf=writer.kdf, key_check=writer.keys.key_check(), files=writer.entries,
            )
            writer.finish(manifest)
        except BaseException:
            writer.abort()
            raise
    digest = archive_sha256(output)
    engine = db.make_engine(settings.db_url)
    try:
        with engine.begin() as conn:
            audit.append(conn, Change(actor, "backup.create", "backup", output.name, after={
                "path": str(output.resolve()), "sha256": digest, "schema_revision": copy.revision,
                "telemetry_rows": manifest.telemetry_rows, "files": len(manifest.files),
            }), clock.now())
    finally:
        engine.dispose()
    progress(f"wrote {output}: {manifest.telemetry_rows} telemetry rows, {len(manifest.files)} files")
    return BackupReport(output, digest, manifest)


@dataclass(frozen=True)
class Verified:
    manifest: Manifest
    sha256: str
    database: store_backup.StoreCopy


def _check_database(manifest: Manifest, copy: store_backup.StoreCopy) -> None:
    if copy.revision != manifest.schema_revision:
        raise ArchiveDamaged(
            f"the store copy is at schema revision {copy.revision}, the manifest says {manifest.schema_revision}"
        )
    if copy.counts != manifest.telemetry_counts:
        diff = sorted(t for t in set(copy.counts) | set(manifest.telemetry_counts)
                      if copy.counts.get(t) != manifest.telemetry_counts.get(t))
        raise ArchiveDamaged(
            f"the store copy holds {copy.counts.get(diff[0], 0)} {diff[0]} rows, the manifest says "
            f"{manifest.telemetry_counts.get(diff[0], 0)}"
        )


def _open(archive: Path, passphrase: bytes, progress: Progress) -> ArchiveReader:
    reader = ArchiveReader(archive)
    try:
        progress("deriving the key from the passphrase")
        reader.unlock(passphrase)
    except BaseException:
        reader.close()
        raise
    return reader


def _unpack(reader: ArchiveReader, dest: Path, progress: Progress) -> tuple[store_backup.StoreCopy, list[FileEntry]]:
    """Decrypt every file under ``dest`` (checking each), then open the store copy; returns it and the data files."""
    manifest = reader.manifest
    data: list[FileEntry] = []
    db_path: Path | None = None
    for entry in manifest.files:
        progress(f"checking {entry.name} ({entry.size / 1e6:.1f} MB)")
        target = dest / entry.name
        target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as out:
            reader.extract(entry, out)
        if entry.name == manifest.database_file:
            db_path = target
        elif entry.name.startswith(DATA):
            data.append(entry)
        else:
            raise ArchiveDamaged(f"the manifest lists {entry.name}, which is neither the store nor a data file")
    if db_path is None:
        raise ArchiveDamaged(f"the manifest's database file {manifest.database_file} is not among its files")
    progress("opening the store copy")
    try:
        copy = store_backup.inspect_copy(manifest.store_kind, db_path)
    except store_backup.StoreBackupError as e:
        raise ArchiveDamaged(str(e)) from None
    _check_database(manifest, copy)
    return copy, data


@_store_errors
def verify_backup(archive: Path, passphrase: bytes, *, progress: Progress) -> Verified:
    """Check every checksum, the manifest's MAC, that everything decrypts and that the store copy opens."""
    reader = _open(archive, passphrase, progress)
    try:
        with _staging(archive.resolve().parent, ".vigil-restore-") as staging:
            copy, _ = _unpack(reader, staging, progress)
    finally:
        reader.close()
    return Verified(reader.manifest, archive_sha256(archive), copy)


def _set_database_url(settings_file: Path, url: str) -> None:
    """Point vigil.toml at ``url``: replace its top-level database_url line, or add one before any table."""
    line = f"database_url = {json.dumps(url)}"
    lines = settings_file.read_text().splitlines()
    for i, text in enumerate(lines):
        if text.startswith("["):
            lines.insert(i, line)
            break
        if re.match(r"\s*database_url\s*=", text):
            lines[i] = line
            break
    else:
        lines.append(line)
    settings_file.write_text("\n".join(lines) + "\n")


def _known_revision(revision: str | None) -> None:
    if revision is None:
        return
    engine = db.make_engine("sqlite://")
    try:
        scripts = ScriptDirectory.from_config(db.alembic_config(engine))
        if scripts.get_revision(revision) is None:
            raise AlembicCommandError(revision)
    except AlembicCommandError:
        raise BackupError(
            f"the backup's store is at schema revision {revision}, which this Vigil ({vigil.__version__}) does not "
            "know: restore it with the Vigil version that wrote it (or a newer one)"
        ) from None
    finally:
        engine.dispose()


@_store_errors
def restore_backup(
    archive: Path, passphrase: bytes, data_dir: Path, *, database_url: str | None, force: bool, clock: Clock,
    progress: Progress, actor: str, env: dict[str, str] | None = None,
) -> RestoreReport:
    """Restore onto a fresh data dir (and an empty database): the same CA, keys, settings and store."""
    if data_dir.exists() and not data_dir.is_dir():
        raise BackupError(f"{data_dir} is not a directory")
    if data_dir.is_dir() and any(data_dir.iterdir()) and not force:
        raise BackupError(f"{data_dir} is not empty; restore onto a fresh data directory or pass --force")
    reader = _open(archive, passphrase, progress)
    manifest = reader.manifest
    _known_revision(manifest.schema_revision)
    fresh = not data_dir.exists()
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        with _staging(data_dir, ".vigil-restore-") as staging:
            copy, data = _unpack(reader, staging, progress)
            for entry in data:
                rel = entry.name.removeprefix(DATA)
                target = data_dir / rel
                target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
                (staging / entry.name).chmod(entry.mode)
                os.replace(staging / entry.name, target)
            if not (data_dir / SETTINGS_FILE).exists():
                raise ArchiveDamaged(f"the backup holds no {SETTINGS_FILE}")
            if database_url:
                _set_database_url(data_dir / SETTINGS_FILE, database_url)
            settings = load_settings(data_dir, env)
            url = settings.db_url
            store_backup.restore_copy(copy, url, force=force, progress=progress)
    except BaseException:
        if not force:  # the directory was empty: leave it so, not half restored
            for child in data_dir.iterdir():
                shutil.rmtree(child) if child.is_dir() else child.unlink()
            if fresh:
                data_dir.rmdir()
        raise
    finally:
        reader.close()
    digest = archive_sha256(archive)
    engine = db.make_engine(url)
    try:
        progress("bringing the schema to this Vigil's revision")
        db.upgrade(engine)
        with engine.begin() as conn:
            counts = store_backup.telemetry_counts(conn)
            if counts != manifest.telemetry_counts:
                raise BackupError(
                    f"the restored store holds {sum(counts.values())} telemetry rows, the backup "
                    f"{manifest.telemetry_rows}: {counts} against {manifest.telemetry_counts}"
                )
            audit.append(conn, Change(actor, "backup.restore", "backup", archive.name, after={
                "sha256": digest, "created_at": manifest.created_at.isoformat(), "created_by": manifest.created_by,
                "source_host": manifest.host, "schema_revision": manifest.schema_revision,
                "telemetry_rows": manifest.telemetry_rows, "data_dir": str(data_dir.resolve()),
            }), clock.now())
    finally:
        engine.dispose()
    return RestoreReport(data_dir, url, manifest, counts)
