"""The server's Ed25519 action-signing key: made at set-up, pinned by agents at enrollment."""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

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
