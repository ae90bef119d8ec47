"""Consistent copies of the store: SQLite's online backup API, pg_dump/pg_restore for PostgreSQL."""

from __future__ import annotations

import os
import re
import shutil
import sqlite3
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import psycopg
import sqlalchemy as sa

from vigil.core.telemetry import TABLES

Progress = Callable[[str], None]
SQLITE_FILE = "vigil.db"
POSTGRES_FILE = "vigil.pgdump"


class StoreBackupError(Exception):
    """The store could not be copied, inspected or restored; the message says why and what to do."""


@dataclass(frozen=True)
class StoreCopy:
    """A copy of the store on disk with what it holds: its schema revision and telemetry rows per table."""

    kind: str  # "sqlite" | "postgresql"
    path: Path
    revision: str | None
    counts: dict[str, int]


def store_kind(url: str) -> str:
    name = sa.engine.make_url(url).get_backend_name()
    if name not in ("sqlite", "postgresql"):
        raise StoreBackupError(f"cannot back up a {name} database: Vigil's store is SQLite or PostgreSQL")
    return name


def sqlite_path(url: str) -> Path:
    database = sa.engine.make_url(url).database
    if not database or database == ":memory:":
        raise StoreBackupError(f"{url}: not a SQLite database file")
    return Path(database)


def _libpq(url: str) -> tuple[str, dict[str, str]]:
    """A libpq URL without the password, and an environment carrying it: a command line is visible to `ps`."""
    u = sa.engine.make_url(url)
    env = dict(os.environ)
    if u.password:
        env["PGPASSWORD"] = str(u.password)
    return u.set(drivername="postgresql", password=None).render_as_string(hide_password=False), env


def _tool(name: str) -> str:
    found = shutil.which(name)
    if not found:
        raise StoreBackupError(
            f"{name} was not found on PATH: install the PostgreSQL client tools (Debian: postgresql-client) "
            "of the server's major version or newer"
        )
    return found


def _run(argv: list[str], env: dict[str, str], what: str) -> None:
    done = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        detail = (done.stderr or done.stdout).strip().splitlines()
        raise StoreBackupError(f"{what} failed (exit {done.returncode}): {' / '.join(detail[-3:]) or 'no output'}")


def _sqlite_counts(conn: sqlite3.Connection) -> tuple[str | None, dict[str, int]]:
    present = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    revision = None
    if "alembic_version" in present:
        row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
        revision = row[0] if row else None
    counts = {t: int(conn.execute(f'SELECT count(*) FROM "{t}"').fetchone()[0]) for t in TABLES if t in present}
    return revision, counts


def snapshot(url: str, dest_dir: Path, progress: Progress) -> StoreCopy:
    """Copy the live store into ``dest_dir``, consistent at one instant while the server keeps writing."""
    if store_kind(url) == "sqlite":
        return _snapshot_sqlite(sqlite_path(url), dest_dir / SQLITE_FILE, progress)
    return _snapshot_postgres(url, dest_dir / POSTGRES_FILE, progress)


def _snapshot_sqlite(source: Path, dest: Path, progress: Progress) -> StoreCopy:
    if not source.is_file():
        raise StoreBackupError(f"{source} does not exist: is this the data directory of a set-up server?")
    progress(f"copying the SQLite store {source} ({source.stat().st_size / 1e6:.1f} MB)")
    src = sqlite3.connect(source, timeout=30)
    dst = sqlite3.connect(dest)
    try:
        # One step (pages=-1) reads under a single WAL snapshot: writers go on, and the copy is the database
        # at one instant. Stepping in pieces would restart on every write by the server, i.e. never finish.
        src.backup(dst, pages=-1)
        dst.execute("PRAGMA journal_mode=DELETE")  # one self-contained file; the server turns WAL on again
        revision, counts = _sqlite_counts(dst)
    finally:
        dst.close()
        src.close()
    return StoreCopy("sqlite", dest, revision, counts)


def _snapshot_postgres(url: str, dest: Path, progress: Progress) -> StoreCopy:
    pg_dump = _tool("pg_dump")
    libpq, env = _libpq(url)
    progress(f"dumping the PostgreSQL store {sa.engine.make_url(url).database} with pg_dump")
    try:
        with psycopg.connect(libpq, password=env.get("PGPASSWORD"), autocommit=True) as conn:
            # The counts and pg_dump read the same exported snapshot, so the manifest describes exactly the dump.
            conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            snap = conn.execute("SELECT pg_export_snapshot()").fetchone()
            assert snap is not None
            present = {
                r[0] for r in conn.execute(
                    "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()"
                )
            }
            revision = None
            if "alembic_version" in present:
                row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
                revision = row[0] if row else None
            counts: dict[str, int] = {}
            for t in TABLES:
                if t in present:
                    row = conn.execute(f'SELECT count(*) FROM "{t}"').fetchone()
                    counts[t] = int(row[0]) if row else 0
            _run([pg_dump, "--format=custom", f"--snapshot={snap[0]}", f"--file={dest}", libpq], env, "pg_dump")
            conn.execute("COMMIT")
    except psycopg.Error as e:
        raise StoreBackupError(f"cannot read the PostgreSQL store: {str(e).strip().splitlines()[0]}") from None
    return StoreCopy("postgresql", dest, revision, counts)


_COPY = re.compile(r'^COPY (?:(?:"[^"]+"|[^ ."]+)\.)?(?:"([^"]+)"|([^ ."]+)) ')


def inspect_copy(kind: str, path: Path) -> StoreCopy:
    """Open a copy without a server and read its revision and counts; raises when it does not open."""
    if kind == "sqlite":
        try:
            conn = sqlite3.connect(f"file:{path}?mode=ro&immutable=1", uri=True)
            try:
                check = conn.execute("PRAGMA quick_check").fetchone()
                if not check or check[0] != "ok":
                    raise StoreBackupError(f"the SQLite copy fails its integrity check: {check}")
                revision, counts = _sqlite_counts(conn)
            finally:
                conn.close()
        except sqlite3.DatabaseError as e:
            raise StoreBackupError(f"the SQLite copy does not open: {e}") from None
        return StoreCopy(kind, path, revision, counts)
    return _inspect_dump(path)


def _inspect_dump(path: Path) -> StoreCopy:
    """Count a custom-format dump's rows from pg_restore's COPY text: one line per row, newlines escaped."""
    pg_restore = _tool("pg_restore")
    _run([pg_restore, "--list", str(path)], dict(os.environ), "pg_restore --list (the dump's table of contents)")
    counts: dict[str, int] = {}
    revision: str | None = None
    proc = subprocess.Popen(
        [pg_restore, "--data-only", "--file=-", str(path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None
    table: str | None = None
    for raw in proc.stdout:
        line = raw.rstrip(b"\n")
        if table is None:
            m = _COPY.match(line.decode("utf-8", "replace"))
            if m:
                table = m.group(1) or m.group(2)
                if table in TABLES:
                    counts[table] = 0
            continue
        if line == b"\\.":
            table = None
        elif table == "alembic_version":
            revision = line.decode()
        elif table in counts:
            counts[table] += 1
    err = proc.stderr.read().decode("utf-8", "replace") if proc.stderr else ""
    if proc.wait() != 0:
        raise StoreBackupError(f"pg_restore cannot read the dump: {err.strip() or 'no output'}")
    return StoreCopy("postgresql", path, revision, counts)


def restore_copy(copy: StoreCopy, url: str, *, force: bool, progress: Progress) -> None:
    """Put ``copy`` in place as the store at ``url``: an absent SQLite file, or an empty PostgreSQL database."""
    kind = store_kind(url)
    if kind != copy.kind:
        raise StoreBackupError(
            f"this backup holds a {copy.kind} store; it restores to {copy.kind} only (the target is {kind})"
        )
    if kind == "sqlite":
        target = sqlite_path(url)
        siblings = [target, *(target.with_name(target.name + s) for s in ("-wal", "-shm", "-journal"))]
        if target.exists() and not force:
            raise StoreBackupError(f"{target} already exists; restore onto a fresh data directory or pass --force")
        target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        progress(f"writing the SQLite store {target}")
        partial = target.with_name(target.name + ".restoring")
        shutil.copyfile(copy.path, partial)
        partial.chmod(0o600)
        for p in siblings:
            p.unlink(missing_ok=True)
        os.replace(partial, target)
        return
    pg_restore = _tool("pg_restore")
    libpq, env = _libpq(url)
    try:
        with psycopg.connect(libpq, password=env.get("PGPASSWORD"), autocommit=True) as conn:
            row = conn.execute(
                "SELECT count(*) FROM information_schema.tables WHERE table_schema = current_schema()"
            ).fetchone()
    except psycopg.Error as e:
        raise StoreBackupError(f"cannot connect to the target database: {str(e).strip().splitlines()[0]}") from None
    if row and row[0] and not force:
        raise StoreBackupError(
            f"the target database {sa.engine.make_url(url).database} already holds {row[0]} table(s); "
            "restore into a fresh, empty database or pass --force to replace them"
        )
    progress(f"restoring the PostgreSQL store into {sa.engine.make_url(url).database} with pg_restore")
    argv = [pg_restore, "--no-owner", "--no-privileges", "--exit-on-error", "--single-transaction"]
    if force and row and row[0]:
        argv += ["--clean", "--if-exists"]
    _run([*argv, f"--dbname={libpq}", str(copy.path)], env, "pg_restore")


def telemetry_counts(conn: sa.Connection) -> dict[str, int]:
    present = set(sa.inspect(conn).get_table_names())
    return {
        t: int(conn.execute(sa.text(f'SELECT count(*) FROM "{t}"')).scalar_one()) for t in TABLES if t in present
    }
