"""The agent ⇄ server wire contract: paths, headers and message shapes both sides agree on.

Telemetry batches are not modelled here: they are validated against ``vigil.core.telemetry`` by
the server's fast validator. Everything else is a pydantic model, so both ends parse the same way.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

AGENT_API = "/agent/v1"
ENROLL_PATH = f"{AGENT_API}/enroll"
TELEMETRY_PATH = f"{AGENT_API}/telemetry"
HEARTBEAT_PATH = f"{AGENT_API}/heartbeat"

ONBOARDING_FORMAT = "vigil-onboarding/1"
CREDENTIAL_PREFIX = "vgd_"  # device credentials read "vgd_<device id>.<secret>"

MAX_BATCH_EVENTS = 5_000
MAX_BATCH_BYTES = 16 * 1024 * 1024  # after decompression


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class OnboardingPackage(_Model):
    """What an administrator hands to an endpoint: where the server is and how to trust it."""

    format: str = ONBOARDING_FORMAT
    server_url: str
    ca_cert_pem: str
    ca_sha256: str = Field(description="SHA-256 of the CA certificate (DER), hex; the agent pins it")
    token: str
    group: str | None = None
    expires_at: datetime


class EnrollRequest(_Model):
    token: str = Field(min_length=1, max_length=256)
    hostname: str = Field(min_length=1, max_length=255)
    os_platform: str = Field(max_length=32)
    os_version: str = Field(default="", max_length=128)
    agent_version: str = Field(max_length=32)
    machine_id: str = Field(default="", max_length=128)


class EnrollResponse(_Model):
    device_id: str
    credential: str


class TelemetryBatchHeader(_Model):
    """The envelope of a batch; ``events`` is a list of rows, each with a ``table`` key."""

    batch_id: str = Field(min_length=8, max_length=64)
    events: list[dict[str, Any]]


class TelemetryAck(_Model):
    batch_id: str
    accepted: int
    duplicate: bool


class AgentCounters(_Model):
    """Event-loss accounting, per host: every event is in exactly one of these states."""

    produced: int = 0
    spooled: int = 0
    sent: int = 0
    acknowledged: int = 0
    dropped: dict[str, int] = Field(default_factory=dict)


class Heartbeat(_Model):
    agent_version: str
    ip_addresses: list[str] = Field(default_factory=list)
    counters: AgentCounters = Field(default_factory=AgentCounters)
    sensors: dict[str, str] = Field(default_factory=dict, description="provider name → health")


class HeartbeatResponse(_Model):
    server_time: datetime
    commands: list[dict[str, Any]] = Field(default_factory=list)


class ErrorBody(_Model):
    """Every 4xx/5xx from Vigil: what went wrong and, where it applies, the offending field."""

    error: str
    detail: str
    field: str | None = None
