"""Server settings: read from `<data dir>/vigil.toml`, overridden by `VIGIL_*` environment variables."""

from __future__ import annotations

import ipaddress
import json
import os
import tomllib
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

DEFAULT_DATA_DIR = Path("/var/lib/vigil")
SETTINGS_FILE = "vigil.toml"
# `make up` keeps its data in the checkout's ./var: a CLI run from the checkout finds it without flags.
LOCAL_DATA_DIR = Path("var")


class SettingsError(ValueError):
    """The settings file or environment holds a value Vigil cannot use."""


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class OidcSettings(BaseModel):
    """OpenID Connect single sign-on for the portal (the `[oidc]` table of vigil.toml)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    issuer: str
    client_id: str = Field(min_length=1)
    client_secret: str = ""
    # A file holding the secret, so that vigil.toml can stay readable by more than the service account.
    client_secret_file: str = ""
    provider_name: str = "single sign-on"  # shown as "Sign in with <provider_name>"
    scopes: list[str] = Field(default_factory=lambda: ["openid", "profile", "email"])
    groups_claim: str = "groups"  # dots descend into objects: "realm_access.roles"
    username_claim: str = "preferred_username"
    # IdP group name → Vigil user groups its members join at each sign-in.
    group_map: dict[str, list[str]] = Field(default_factory=dict)
    create_users: bool = True
    # Refuse users whose IdP groups map to no Vigil user group.
    require_mapped_group: bool = False
    ca_file: str = ""  # a CA bundle for an IdP whose certificate is not publicly trusted
    timeout_seconds: float = Field(default=10.0, gt=0, le=60)
    clock_skew_seconds: int = Field(default=60, ge=0, le=600)

    @field_validator("issuer")
    @classmethod
    def _https_issuer(cls, v: str) -> str:
        parts = urlsplit(v)
        if parts.scheme == "https" or (parts.scheme == "http" and _loopback(parts.hostname or "")):
            return v.rstrip("/")
        raise ValueError("the issuer must be an https:// URL (http:// only on loopback)")

    @field_validator("scopes")
    @classmethod
    def _openid_scope(cls, v: list[str]) -> list[str]:
        if "openid" not in v:
            raise ValueError("the scopes must include 'openid'")
        return v

    @model_validator(mode="after")
    def _one_secret(self) -> OidcSettings:
        if self.client_secret and self.client_secret_file:
            raise ValueError("give client_secret or client_secret_file, not both")
        return self

    def secret(self) -> str:
        """The client secret, read from its file each time so that a rotated secret needs no restart."""
        if not self.client_secret_file:
            return self.client_secret
        try:
            return Path(self.client_secret_file).read_text().strip()
        except OSError as e:
            raise SettingsError(f"oidc.client_secret_file: cannot read {self.client_secret_file}: {e.strerror}") from e


class SecuritySettings(BaseModel):
    """Sign-in throttling and the second-factor policy (the `[security]` table of vigil.toml)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # Roles whose members must sign in with TOTP: basic mode's "full-access"/"read-only", or RBAC role names.
    require_mfa_roles: list[str] = Field(default_factory=list)
    # Days from the first sign-in the policy applied at until such a user can reach only the enrolment page.
    mfa_grace_days: int = Field(default=7, ge=0, le=90)
    # Wrong passwords from one source for one account before it must wait; each further one doubles the wait.
    sign_in_free_failures: int = Field(default=5, ge=1, le=100)
    sign_in_max_backoff_seconds: int = Field(default=900, ge=1, le=86400)
    # This many failures for one account (from any sources) within the window make one audit record and a log warning.
    guessing_alert_failures: int = Field(default=20, ge=2, le=100000)
    guessing_alert_minutes: int = Field(default=10, ge=1, le=1440)


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
    # A YAML or TOML file of values for the rules' |expand placeholders (name -> value or list of values).
    rule_placeholders: str = ""
    oidc: OidcSettings | None = None
    security: SecuritySettings = Field(default_factory=SecuritySettings)
    # Reverse proxies (addresses or networks) whose X-Forwarded-For/-Proto are believed; anyone else's are ignored.
    trusted_proxies: list[str] = Field(default_factory=list)
    # The bearer token a Prometheus scrape of /metrics sends; empty: the one `vigil setup` wrote to the pki folder.
    metrics_token: str = ""
    # Alert severities that start an automated investigation by themselves (docs/automated-investigation.md);
    # empty (the default) leaves AIR to analysts and the API.
    air_alert_severities: list[Literal["Informational", "Low", "Medium", "High"]] = Field(default_factory=list)
    # Ask an expert: where a new case, an answer or a targeted attack notification is announced (empty: nowhere).
    expert_webhook_url: str = ""
    smtp_host: str = ""
    smtp_port: int = Field(default=25, ge=1, le=65535)
    mail_from: str = "vigil@localhost"
    # Scale-out (docs/scale-out.md): NATS JetStream URL(s), comma-separated. Empty (the default): each batch is
    # stored inside its request, as in one process. Set: the agent API publishes batches and `vigil worker` stores.
    bus_url: str = ""
    bus_stream: str = Field(default="VIGIL_TELEMETRY", pattern=r"^[A-Z][A-Z0-9_]{0,31}$")
    # Batches published and not yet stored past which the agent API answers 429 + Retry-After (agents spool).
    bus_max_backlog: int = Field(default=200_000, ge=1)
    # How long a worker holds a batch before JetStream gives it to another worker (a crashed one never acks).
    bus_ack_wait_seconds: float = Field(default=30.0, gt=0, le=3600)

    @field_validator("bus_url")
    @classmethod
    def _nats_urls(cls, v: str) -> str:
        for url in (u.strip() for u in v.split(",") if u.strip()):
            parts = urlsplit(url)
            if parts.scheme not in ("nats", "tls") or not parts.hostname:
                raise ValueError(f"{url!r} is not a NATS URL (nats://host:4222 or tls://host:4222)")
        return v

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, v: list[str]) -> list[str]:
        for entry in v:
            try:
                ipaddress.ip_network(entry, strict=False)
            except ValueError:
                raise ValueError(f"{entry!r} is not an IP address or network (CIDR)") from None
        return v

    @field_validator("metrics_token")
    @classmethod
    def _long_token(cls, v: str) -> str:
        if v and len(v) < 32:
            raise ValueError("use at least 32 characters (e.g. `openssl rand -hex 32`)")
        return v

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

    @property
    def metrics_token_file(self) -> Path:
        return self.pki_dir / "metrics.token"

    def scrape_token(self) -> str:
        """The /metrics token: the setting, else the file, read each time so that a rotated one needs no restart."""
        if self.metrics_token:
            return self.metrics_token
        try:
            return self.metrics_token_file.read_text().strip()
        except FileNotFoundError:
            return ""  # a data dir set up before the token existed: only analyst tokens open /metrics


_ENV = {
    "VIGIL_DATABASE_URL": "database_url",
    "VIGIL_LISTEN_HOST": "listen_host",
    "VIGIL_LISTEN_PORT": "listen_port",
    "VIGIL_PUBLIC_URL": "public_url",
    "VIGIL_METRICS_TOKEN": "metrics_token",
    "VIGIL_BUS_URL": "bus_url",
    "VIGIL_BUS_STREAM": "bus_stream",
}


def data_dir_from_env(explicit: Path | None = None, cwd: Path | None = None) -> Path:
    """The data directory, by precedence: the flag, ``$VIGIL_DATA_DIR``, ``./var`` when it holds a set-up server
    (what `make up` made), then /var/lib/vigil."""
    if explicit is not None:
        return explicit
    if os.environ.get("VIGIL_DATA_DIR"):
        return Path(os.environ["VIGIL_DATA_DIR"])
    local = (cwd or Path.cwd()) / LOCAL_DATA_DIR
    if (local / SETTINGS_FILE).is_file():
        return local.resolve()
    return DEFAULT_DATA_DIR


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
    for key, value in s.model_dump(exclude={"data_dir", "oidc", "security"}).items():
        lines.append(f"{key} = {json.dumps(value)}")
    return "\n".join(lines) + "\n"
