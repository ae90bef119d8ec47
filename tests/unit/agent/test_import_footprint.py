"""What the running agent loads: its resident memory is capped (80 MiB), and imports are most of it; and the
libsodium verifier it uses for signed commands holds every forgery out."""

from __future__ import annotations

import base64
import subprocess
import sys
from collections.abc import Callable
from datetime import timedelta

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from vigil.wire import ActionCommand, SignedCommand, public_key_text, sign_command, signature_valid

KEY = Ed25519PrivateKey.generate()
COMMAND = ActionCommand(action_id="a" * 16, device_id="d", type="Echo", issued_at="2026-01-01T00:00:00Z",
                        expires_at="2026-01-01T01:00:00Z", nonce="n" * 16)

Edit = Callable[[str], str]

PROBE = """
import sys
import vigil.agent.runner
from vigil.wire import SignedCommand, signature_valid
signed = SignedCommand.model_validate_json(sys.argv[1])
print(signature_valid(sys.argv[2], signed), signature_valid(sys.argv[3], signed),
      sorted(m for m in ("cryptography", "httpx", "rich") if m in sys.modules))
"""


def test_the_agent_verifies_a_command_without_loading_cryptography_or_httpx() -> None:
    signed = sign_command(KEY, COMMAND).model_dump_json()
    other = public_key_text(Ed25519PrivateKey.generate())
    out = subprocess.run([sys.executable, "-c", PROBE, signed, public_key_text(KEY), other],
                         capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["True", "False", "[]"]


def _flip(text: str, byte: int) -> str:
    raw = bytearray(base64.b64decode(text))
    raw[byte] ^= 1
    return base64.b64encode(bytes(raw)).decode()


@pytest.mark.parametrize(("key", "signature"), [
    (None, lambda s: _flip(s, 0)),  # R altered
    (None, lambda s: _flip(s, 63)),  # S altered
    (None, lambda s: base64.b64encode(base64.b64decode(s)[:63]).decode()),  # a byte short
    (None, lambda s: s + "AA=="),  # a byte long... as base64 that decodes
    (None, lambda s: ""),  # unsigned
    (None, lambda s: "not base64!"),
    (None, lambda s: base64.b64encode(bytes(64)).decode()),  # all zeros
    (lambda k: _flip(k, 5), None),  # another key
    (lambda k: base64.b64encode(base64.b64decode(k)[:31]).decode(), None),  # a key a byte short
    (lambda k: base64.b64encode(bytes(32)).decode(), None),  # a small-order key (the identity point)
    (lambda k: "%%%", None),
])
def test_forged_signatures_and_keys_are_refused(key: Edit | None, signature: Edit | None) -> None:
    good = sign_command(KEY, COMMAND)
    pub = public_key_text(KEY)
    assert signature_valid(pub, good)
    forged = SignedCommand(command=COMMAND, signature=signature(good.signature) if signature else good.signature)
    assert not signature_valid(key(pub) if key else pub, forged)


def test_a_signature_covers_every_field() -> None:
    good = sign_command(KEY, COMMAND)
    for change in ({"device_id": "e"}, {"type": "Kill"}, {"parameters": {"pid": 1}}, {"nonce": "m" * 16},
                   {"expires_at": COMMAND.expires_at + timedelta(hours=1)}):
        moved = SignedCommand(command=COMMAND.model_copy(update=change), signature=good.signature)
        assert not signature_valid(public_key_text(KEY), moved), change
