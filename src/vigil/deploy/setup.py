"""The Set up phase: data directory, internal CA and server certificate, database, first administrator."""

from __future__ import annotations

import os
import secrets
import socket
from dataclasses import dataclass, field
from pathlib import Path

from vigil.app.principal import os_user
from vigil.config import SETTINGS_FILE, Settings, load_settings, settings_toml
from vigil.core.clock import Clock
from vigil.core.rbac import BasicRole
from vigil.deploy import pki, signing
from vigil.store import audit, db
from vigil.store.audit import Change
from vigil.store.devices import ensure_default_group
from vigil.store.users import count_users, create_user


@dataclass
class SetupReport:
    settings: Settings
    created: list[str] = field(default_factory=list)
    admin_username: str | None = None
    admin_password: str | None = None  # shown once, never stored in clear

    @property
    def changed(self) -> bool:
        return bool(self.created)


def _write(path: Path, data: bytes, mode: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def run_setup(
    data_dir: Path,
    clock: Clock,
    *,
    admin_username: str = "admin",
    overrides: dict[str, object] | None = None,
) -> SetupReport:
    """Create whatever is missing; running it again on a complete data directory changes nothing."""
    now = clock.now()
    created: list[str] = []
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    settings_path = data_dir / SETTINGS_FILE
    if not settings_path.exists():
        names = list(dict.fromkeys(["localhost", "127.0.0.1", socket.getfqdn()]))
        base = Settings(data_dir=data_dir, server_names=names)
        s = base.model_copy(update=overrides or {})
        Settings.model_validate(s.model_dump())  # overrides are checked like the file would be
        settings_path.write_text(settings_toml(s))
        created.append(f"settings {settings_path}")
    settings = load_settings(data_dir)

    settings.pki_dir.mkdir(mode=0o700, exist_ok=True)
    ca_key_path = settings.pki_dir / "ca.key"
    if not settings.ca_cert.exists():
        ca = pki.make_ca(settings.org_name, now)
        _write(ca_key_path, ca.key_pem, 0o600)
        _write(settings.ca_cert, ca.cert_pem, 0o644)
        created.append(f"internal CA {settings.ca_cert}")
    if not settings.server_cert.exists():
        ca = pki.KeyPair(settings.ca_cert.read_bytes(), ca_key_path.read_bytes())
        server = pki.make_server_cert(ca, settings.server_names, now)
        _write(settings.server_key, server.key_pem, 0o600)
        _write(settings.server_cert, server.cert_pem, 0o644)
        created.append(f"server certificate {settings.server_cert} for {', '.join(settings.server_names)}")
    if not settings.secret_key_file.exists():
        _write(settings.secret_key_file, secrets.token_bytes(32), 0o600)
        created.append("session signing key")
    if not settings.metrics_token_file.exists():
        # Prometheus reads it with `authorization: {credentials_file: ...}`; /metrics trusts no client address.
        _write(settings.metrics_token_file, (secrets.token_urlsafe(32) + "\n").encode(), 0o600)
        created.append(f"metrics scrape token {settings.metrics_token_file}")
    if not signing.key_path(settings).exists():
        signing.create_key(signing.key_path(settings))
        created.append(f"action-signing key {signing.key_path(settings)}")

    engine = db.make_engine(settings.db_url)
    try:
        before = db.current_revision(engine)
        db.upgrade(engine)
        if before != db.head_revision(engine):
            created.append(f"database schema at {db.head_revision(engine)}")
        report = SetupReport(settings, created)
        with engine.begin() as conn:
            ensure_default_group(conn, now)
            if count_users(conn) == 0:
                password = secrets.token_urlsafe(15)
                create_user(conn, admin_username, password, BasicRole.FULL_ACCESS, now)
                report.admin_username, report.admin_password = admin_username, password
                created.append(f"administrator {admin_username!r}")
            if created:  # what was made, by whom at the console: the first records of a new server's audit log
                audit.append(conn, Change(f"cli:{os_user()}", "server.setup", "data_dir", str(data_dir),
                                          after={"created": created}), now)
    finally:
        engine.dispose()
    return report
