"""The agent ⇄ server wire contract: paths, headers and message shapes both sides agree on.

Telemetry batches are not modelled here: they are validated against ``vigil.core.telemetry`` by
the server's fast validator. Everything else is a pydantic model, so both ends parse the same way.
"""

from __future__ import annotations

import base64
import json
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

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
# The longest a signed command may be valid (expires_at - issued_at): the server signs nothing longer and the agent
# refuses anything longer, so a command leaked from the queue or a backup is useless within a day.
MAX_COMMAND_LIFETIME = timedelta(hours=24)

ONBOARDING_FORMAT = "vigil-onboarding/1"
CREDENTIAL_PREFIX = "vgd_"  # device credentials read "vgd_<device id>.<secret>"

MAX_BATCH_EVENTS = 5_000
MAX_BATCH_BYTES = 16 * 1024 * 1024  # after decompression
MAX_LISTED_REJECTIONS = 100  # rejected rows an ack describes one by one; all are counted
MAX_JSON_DEPTH = 32  # nesting of free-form JSON from an agent (action output), as telemetry's dynamic values
MAX_JSON_CHARS = 1024 * 1024


def _storable_text(value: str) -> str:
    # Both databases store only real Unicode (no lone surrogates, which Python's JSON parser lets through)
    # and PostgreSQL's text holds no NUL: refused here as the agent's fault, not failed on as the server's.
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("must be valid Unicode (no lone surrogates)") from None
    return value


def _json_texts(value: Any) -> list[str]:
    """Every key and string in a JSON value, or raises ValueError when it is nested too deep."""
    out: list[str] = []
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        v, depth = stack.pop()
        if isinstance(v, str):
            out.append(v)
        elif isinstance(v, dict | list):
            if depth > MAX_JSON_DEPTH:
                raise ValueError(f"nested deeper than {MAX_JSON_DEPTH} levels")
            if isinstance(v, dict):
                out.extend(v)
            stack.extend((c, depth + 1) for c in (v.values() if isinstance(v, dict) else v))
    return out


def _storable_json(value: dict[str, Any]) -> dict[str, Any]:
    for text in _json_texts(value):
        _storable_text(text)
    if len(json.dumps(value)) > MAX_JSON_CHARS:
        raise ValueError(f"longer than {MAX_JSON_CHARS} characters as JSON")
    return value


# What an agent sends as text or free-form JSON; the server stores it as it came.
Text = Annotated[str, AfterValidator(_storable_text)]
JsonObject = Annotated[dict[str, Any], AfterValidator(_storable_json)]
Count = Annotated[int, Field(ge=0, le=2**63 - 1)]


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
    token: Text = Field(min_length=1, max_length=256)
    hostname: Text = Field(min_length=1, max_length=255)
    os_platform: Text = Field(max_length=32)
    os_version: Text = Field(default="", max_length=128)
    agent_version: Text = Field(max_length=32)
    machine_id: Text = Field(default="", max_length=128)


class EnrollResponse(_Model):
    device_id: str
    credential: str


class TelemetryBatchHeader(_Model):
    """The envelope of a batch; ``events`` is a list of rows, each with a ``table`` key."""

    batch_id: str = Field(min_length=8, max_length=64)
    events: list[dict[str, Any]]


class RejectedRow(_Model):
    """A row of a batch the server did not store: where it was and why."""

    index: int = Field(description="position in the batch's events")
    table: str | None = None
    field: str | None = Field(default=None, description="the offending column; none when the whole row is wrong")
    reason: str


class TelemetryAck(_Model):
    batch_id: str
    accepted: int
    duplicate: bool
    rejected: int = Field(default=0, description="rows not stored because they break the telemetry schema")
    rejections: list[RejectedRow] = Field(
        default_factory=list, description=f"the first {MAX_LISTED_REJECTIONS} rejected rows, each with its reason"
    )


class AgentCounters(_Model):
    """Event-loss accounting, per host: every event is in exactly one of these states."""

    produced: Count = 0
    spooled: Count = 0
    sent: Count = 0
    acknowledged: Count = 0
    dropped: dict[Annotated[Text, Field(max_length=128)], Count] = Field(default_factory=dict, max_length=256)


class Heartbeat(_Model):
    agent_version: Text = Field(max_length=32)
    ip_addresses: list[Annotated[Text, Field(max_length=64)]] = Field(default_factory=list, max_length=256)
    counters: AgentCounters = Field(default_factory=AgentCounters)
    sensors: dict[Annotated[Text, Field(max_length=128)], Annotated[Text, Field(max_length=4096)]] = Field(
        default_factory=dict, max_length=256, description="provider name → health"
    )


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


    def lifetime_problem(self) -> str | None:
        """Why the command's validity window is unacceptable (empty or beyond the maximum); None when it is fine."""
        life = self.expires_at - self.issued_at
        if life <= timedelta(0):
            return f"expires_at ({self.expires_at.isoformat()}) is not after issued_at ({self.issued_at.isoformat()})"
        if life > MAX_COMMAND_LIFETIME:
            return (f"expires_at is {life} after issued_at; a command may be valid for at most "
                    f"{MAX_COMMAND_LIFETIME}")
        return None


class SignedCommand(_Model):
    command: ActionCommand
    signature: str = Field(default="", max_length=200, description="base64 Ed25519 signature; empty = unsigned")


class CommandLifetimeError(ValueError):
    """The server was asked to sign a command valid for longer than MAX_COMMAND_LIFETIME (or for no time)."""


def sign_command(key: Ed25519PrivateKey, command: ActionCommand) -> SignedCommand:
    """Sign ``command``; raises CommandLifetimeError rather than sign a window beyond the maximum."""
    problem = command.lifetime_problem()
    if problem:
        raise CommandLifetimeError(f"refusing to sign action {command.action_id}: {problem}")
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
    message: Text = Field(default="", max_length=4000)
    # Why the agent refused the command without running it: signature, device, expired, replay...
    refused: Text | None = Field(default=None, max_length=32)
    output: JsonObject = Field(default_factory=dict)


class HeartbeatResponse(_Model):
    server_time: datetime
    commands: list[SignedCommand] = Field(default_factory=list)


class ErrorBody(_Model):
    """Every 4xx/5xx from Vigil: what went wrong and, where it applies, the offending field."""

    error: str
    detail: str
    field: str | None = None
