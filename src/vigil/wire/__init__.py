"""The agent ⇄ server wire contract: paths, headers and message shapes both sides agree on.

Telemetry batches are not modelled here: they are validated against ``vigil.core.telemetry`` by
the server's fast validator. Everything else is a pydantic model, so both ends parse the same way.
"""

from __future__ import annotations

import base64
import json
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

AGENT_API = "/agent/v1"
ENROLL_PATH = f"{AGENT_API}/enroll"
TELEMETRY_PATH = f"{AGENT_API}/telemetry"
HEARTBEAT_PATH = f"{AGENT_API}/heartbeat"
ACTIONS_POLL_PATH = f"{AGENT_API}/actions/poll"  # long-poll for signed commands
ACTION_RESULT_PATH = f"{AGENT_API}/actions/{{action_id}}/result"
ACTION_ARTIFACT_PATH = f"{AGENT_API}/actions/{{action_id}}/artifact"  # packages, getfile
MAX_POLL_SECONDS = 25
MAX_ARTIFACT_BYTES = 256 * 1024 * 1024
# Domain separation: an action signature can never be mistaken for a signature over anything else.
SIGNATURE_CONTEXT = b"vigil-machine-action/1\n"

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
    action_public_key: str | None = Field(
        default=None, description="the server's Ed25519 action-signing key (raw, base64); the agent pins it"
    )


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


class ActionCommand(_Model):
    """What the server orders one device to do; signed as a whole, so no field can be altered."""

    action_id: str = Field(min_length=8, max_length=40)
    device_id: str = Field(max_length=40)
    type: str = Field(max_length=40)
    parameters: dict[str, Any] = Field(default_factory=dict)
    issued_at: datetime
    expires_at: datetime
    nonce: str = Field(min_length=16, max_length=64)

    def signing_bytes(self) -> bytes:
        body = json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return SIGNATURE_CONTEXT + body.encode()


class SignedCommand(_Model):
    command: ActionCommand
    signature: str = Field(default="", max_length=200, description="base64 Ed25519 signature; empty = unsigned")


def sign_command(key: Ed25519PrivateKey, command: ActionCommand) -> SignedCommand:
    return SignedCommand(command=command, signature=base64.b64encode(key.sign(command.signing_bytes())).decode())


def public_key_text(key: Ed25519PrivateKey) -> str:
    from cryptography.hazmat.primitives import serialization

    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.b64encode(raw).decode()


def signature_valid(public_key: str, signed: SignedCommand) -> bool:
    """True only for a signature by ``public_key`` (raw, base64) over exactly this command."""
    # libsodium (PyNaCl) verifies on the agent: ~1 MiB resident against ~7 MiB for cryptography, which only the
    # server (signing, its CA) needs. Imported on the first command, not with the models. libsodium is the
    # stricter verifier (non-canonical signatures and small-order keys refused), which costs a genuine key nothing.
    from nacl.exceptions import BadSignatureError
    from nacl.signing import VerifyKey

    try:
        key = VerifyKey(base64.b64decode(public_key, validate=True))
        key.verify(signed.command.signing_bytes(), base64.b64decode(signed.signature, validate=True))
    except (BadSignatureError, ValueError, TypeError):  # a wrong signature, or a key or signature of bad length
        return False
    return True


class CommandPoll(_Model):
    commands: list[SignedCommand] = Field(default_factory=list)


class ActionResult(_Model):
    """The agent's report on one command: accepted (InProgress), done, failed or refused."""

    status: Literal["InProgress", "Succeeded", "Failed"]
    message: str = Field(default="", max_length=4000)
    # Why the agent refused the command without running it: signature, device, expired, replay...
    refused: str | None = Field(default=None, max_length=32)
    output: dict[str, Any] = Field(default_factory=dict)


class HeartbeatResponse(_Model):
    server_time: datetime
    commands: list[SignedCommand] = Field(default_factory=list)


class ErrorBody(_Model):
    """Every 4xx/5xx from Vigil: what went wrong and, where it applies, the offending field."""

    error: str
    detail: str
    field: str | None = None
