"""Shared fixtures: databases (SQLite always, PostgreSQL when reachable) and a real server process."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from tests.support import VigilServer

PG_URL = os.environ.get("VIGIL_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
# CI sets this so that an unreachable PostgreSQL fails the run instead of skipping its tests.
PG_REQUIRED = os.environ.get("VIGIL_REQUIRE_POSTGRES") == "1"
NATS_URL = os.environ.get("VIGIL_TEST_NATS_URL", "nats://127.0.0.1:4222")
NATS_REQUIRED = os.environ.get("VIGIL_REQUIRE_NATS") == "1"


def _pg_admin_conn() -> psycopg.Connection:
    return psycopg.connect(PG_URL, autocommit=True, connect_timeout=3)


@pytest.fixture(scope="session")
def postgres_available() -> str | None:
    """None when PostgreSQL answers, else the reason it does not."""
    try:
        with _pg_admin_conn() as c:
            c.execute("SELECT 1")
        return None
    except psycopg.Error as e:
        reason = f"PostgreSQL not reachable at {PG_URL}: {str(e).strip().splitlines()[0]}"
        if PG_REQUIRED:
            pytest.fail(reason + " (VIGIL_REQUIRE_POSTGRES=1)")
        return reason


@pytest.fixture(scope="session")
def nats_url() -> str:
    """The NATS (JetStream) server the bus tests use; skipped when it does not answer, failed in CI."""
    host, _, port = NATS_URL.removeprefix("nats://").partition(":")
    try:
        with socket.create_connection((host, int(port or 4222)), timeout=3) as s:
            if not s.recv(4096).startswith(b"INFO"):
                raise OSError("not a NATS server")
    except OSError as e:
        reason = f"NATS not reachable at {NATS_URL}: {e}"
        if NATS_REQUIRED:
            pytest.fail(reason + " (VIGIL_REQUIRE_NATS=1)")
        pytest.skip(reason)
    return NATS_URL


@pytest.fixture
def pg_database(postgres_available: str | None) -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test, dropped afterwards."""
    if postgres_available:
        pytest.skip(postgres_available)
    name = f"vigil_test_{uuid.uuid4().hex[:12]}"
    with _pg_admin_conn() as c:
        c.execute(f'CREATE DATABASE "{name}"')
    base = PG_URL.rsplit("/", 1)[0]
    try:
        yield f"{base}/{name}"
    finally:
        with _pg_admin_conn() as c:
            c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return ""  # the embedded default: <data dir>/vigil.db
    return str(request.getfixturevalue("pg_database"))


@pytest.fixture
def server(tmp_path: Path, db_url: str) -> Iterator[VigilServer]:
    srv = VigilServer.create(tmp_path / "server", db_url)
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture
def sqlite_server(tmp_path: Path) -> Iterator[VigilServer]:
    srv = VigilServer.create(tmp_path / "server", "")
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="session")
def oidc_provider_installed() -> None:
    """The test OpenID provider's node_modules (`npm ci` once per lock file); skipped without Node.js."""
    from tests.oidc_support import OIDC_REQUIRED, NodeMissing, install_provider

    try:
        install_provider()
    except NodeMissing as e:
        if OIDC_REQUIRED:
            pytest.fail(f"{e} (VIGIL_REQUIRE_OIDC=1)")
        pytest.skip(str(e))
