"""The device identity saved at enrollment, and the TLS context that trusts only the pinned CA."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import os
import ssl
from dataclasses import asdict, dataclass
from pathlib import Path

from vigil.agent.errors import CaPinMismatch, EnrollmentError, IdentityError

IDENTITY_FILE = "identity.json"


@dataclass(frozen=True)
class Identity:
    device_id: str
    credential: str
    server_url: str
    ca_cert_pem: str
    ca_sha256: str
    enrolled_at: str
    group: str | None = None
    # The server's Ed25519 action-signing key from the onboarding package; commands must verify with it.
    action_public_key: str | None = None

    def __repr__(self) -> str:  # keep the credential out of logs and tracebacks
        return f"Identity(device_id={self.device_id!r}, server_url={self.server_url!r})"


def ca_fingerprint(ca_cert_pem: str) -> str:
    """SHA-256 (hex) of the CA certificate's DER encoding."""
    try:
        der = ssl.PEM_cert_to_DER_cert(ca_cert_pem.strip() + "\n")
    except ValueError as e:
        raise EnrollmentError(f"the CA certificate is not a PEM certificate: {e}") from e
    return hashlib.sha256(der).hexdigest()


def check_pin(ca_cert_pem: str, ca_sha256: str) -> None:
    expected = ca_sha256.lower().replace(":", "").strip()
    actual = ca_fingerprint(ca_cert_pem)
    if not hmac.compare_digest(expected, actual):
        raise CaPinMismatch(expected, actual)


def pinned_context(ca_cert_pem: str, ca_sha256: str) -> ssl.SSLContext:
    """A client context whose only trust anchor is the pinned CA (no system store)."""
    check_pin(ca_cert_pem, ca_sha256)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_verify_locations(cadata=ca_cert_pem)
    except ssl.SSLError as e:
        raise EnrollmentError(f"the pinned CA certificate cannot be loaded: {e}") from e
    return ctx


def save_identity(state_dir: Path, identity: Identity) -> Path:
    """Write identity.json with mode 0600, atomically (a crash leaves the old file or the new)."""
    state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = state_dir / IDENTITY_FILE
    tmp = state_dir / f".{IDENTITY_FILE}.tmp"
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(asdict(identity), f, indent=2)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return path


def load_identity(state_dir: Path) -> Identity:
    path = state_dir / IDENTITY_FILE
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise IdentityError(f"{path} does not exist: enroll this device first (vigil agent enroll)") from None
    except (OSError, ValueError) as e:
        raise IdentityError(f"{path} cannot be read: {e}") from e
    if path.stat().st_mode & 0o077:
        raise IdentityError(f"{path} is readable by other users; it holds the device credential (chmod 600)")
    try:
        return Identity(**data)
    except TypeError as e:
        raise IdentityError(f"{path} is not a Vigil identity file: {e}") from e
