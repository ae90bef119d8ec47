"""The server's Ed25519 action-signing key: made at set-up, pinned by agents at enrollment."""

from __future__ import annotations

import base64
import hashlib
import os
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from vigil.config import Settings
from vigil.wire import public_key_text

KEY_FILE = "action-signing.key"


class SigningKeyMissing(RuntimeError):
    def __init__(self, path: Path) -> None:
        super().__init__(f"{path} does not exist: run `vigil setup` to create the action-signing key")
        self.path = path


def key_path(settings: Settings) -> Path:
    return settings.pki_dir / KEY_FILE


def create_key(path: Path) -> None:
    pem = Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)


def load_key(settings: Settings) -> Ed25519PrivateKey:
    path = key_path(settings)
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except FileNotFoundError:
        raise SigningKeyMissing(path) from None
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError(f"{path} is not an Ed25519 private key")
    return key


def public_key(settings: Settings) -> str | None:
    """The raw public key, base64, for onboarding packages; None on a data directory set up before it."""
    try:
        return public_key_text(load_key(settings))
    except SigningKeyMissing:
        return None


# Detached signatures by people (a stakeholder signing the deployment plan offline), with the same key type.


def load_private_key(path: Path) -> Ed25519PrivateKey:
    """A person's Ed25519 private key (PEM, as `create_key` writes it); errors name the file."""
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except FileNotFoundError:
        raise ValueError(f"{path} does not exist; make a key with `vigil plan keygen --output {path}`") from None
    except (ValueError, TypeError) as e:
        raise ValueError(f"{path} is not an unencrypted PEM private key ({e})") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError(f"{path} is not an Ed25519 private key")
    return key


def sign_detached(key: Ed25519PrivateKey, message: bytes) -> str:
    """The base64 Ed25519 signature of ``message``."""
    return base64.b64encode(key.sign(message)).decode()


def verify_detached(public_key: str, message: bytes, signature: str) -> bool:
    """True only for a signature by ``public_key`` (raw, base64) over exactly ``message``."""
    try:
        pub = Ed25519PublicKey.from_public_bytes(base64.b64decode(public_key, validate=True))
        pub.verify(base64.b64decode(signature, validate=True), message)
    except (InvalidSignature, ValueError, TypeError):
        return False
    return True


def key_fingerprint(public_key: str) -> str:
    """A short, stable name for a public key: the first 16 hex digits of its SHA-256."""
    try:
        raw = base64.b64decode(public_key, validate=True)
    except ValueError:
        raw = public_key.encode()
    return hashlib.sha256(raw).hexdigest()[:16]
