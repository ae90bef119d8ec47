"""Server settings: read from `<data dir>/vigil.toml`, overridden by `VIGIL_*` environment variables."""

from __future__ import annotations

import json
import os
import tomllib
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

DEFAULT_DATA_DIR = Path("/var/lib/vigil")
SETTINGS_FILE = "vigil.toml"


class SettingsError(ValueError):
    """The settings file or environment holds a value Vigil cannot use."""


class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    data_dir: Path
    database_url: str = ""
    listen_host: str = "127.0.0.1"
    listen_port: int = Field(default=8443, ge=1, le=65535)
    public_url: str = ""
    server_names: list[str] = Field(default_factory=lambda: ["localhost", "127.0.0.1"])
    # Defender keeps data 1–6 months (default 6); we enforce the same range in days.
    retention_days: int = Field(default=180, ge=30, le=186)
    # The audit log is kept on its own clock, longer than telemetry by default (about seven years at most).
    audit_retention_days: int = Field(default=365, ge=30, le=2557)
    tls: bool = True
    enroll_rate_per_minute: int = Field(default=30, ge=1)
    org_name: str = "Vigil"
    # Sigma rule folders loaded beside Vigil's own; `<data dir>/rules` is always among them.
    rules_dirs: list[str] = Field(default_factory=list)

    @property
    def db_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'vigil.db'}"

    @property
    def url(self) -> str:
        if self.public_url:
            return self.public_url.rstrip("/")
        scheme = "https" if self.tls else "http"
        host = "127.0.0.1" if self.listen_host in ("0.0.0.0", "::") else self.listen_host
        return f"{scheme}://{host}:{self.listen_port}"

    @property
    def rule_paths(self) -> list[Path]:
        return [self.data_dir / "rules", *(Path(p) for p in self.rules_dirs)]

    @property
    def pki_dir(self) -> Path:
        return self.data_dir / "pki"

    @property
    def ca_cert(self) -> Path:
        return self.pki_dir / "ca.pem"

    @property
    def server_cert(self) -> Path:
        return self.pki_dir / "server.pem"

    @property
    def server_key(self) -> Path:
        return self.pki_dir / "server.key"

    @property
    def secret_key_file(self) -> Path:
        return self.pki_dir / "session.key"


_ENV = {
    "VIGIL_DATABASE_URL": "database_url",
    "VIGIL_LISTEN_HOST": "listen_host",
    "VIGIL_LISTEN_PORT": "listen_port",
    "VIGIL_PUBLIC_URL": "public_url",
}


def data_dir_from_env(explicit: Path | None = None) -> Path:
    if explicit is not None:
        return explicit
    return Path(os.environ.get("VIGIL_DATA_DIR", str(DEFAULT_DATA_DIR)))


def load_settings(data_dir: Path, env: dict[str, str] | None = None) -> Settings:
    env = dict(os.environ) if env is None else env
    values: dict[str, object] = {}
    path = data_dir / SETTINGS_FILE
    if path.exists():
        try:
            values.update(tomllib.loads(path.read_text()))
        except tomllib.TOMLDecodeError as e:
            raise SettingsError(f"{path}: {e}") from None
    for var, key in _ENV.items():
        if env.get(var):
            values[key] = env[var]
    values["data_dir"] = data_dir
    try:
        return Settings.model_validate(values)
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise SettingsError(f"{path}: {where}: {first['msg']}") from None


def settings_toml(s: Settings) -> str:
    """The settings file as written at set-up; JSON string and list syntax is valid TOML."""
    lines = ["# Vigil server settings, written by `vigil setup`. VIGIL_* variables override them."]
    for key, value in s.model_dump(exclude={"data_dir"}).items():
        lines.append(f"{key} = {json.dumps(value)}")
    return "\n".join(lines) + "\n"
