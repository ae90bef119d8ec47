"""What the running agent loads: its resident memory is capped (80 MiB), and imports are most of it."""

from __future__ import annotations

import subprocess
import sys

PROBE = """
import sys
import vigil.agent.runner
before = sorted(m for m in ("cryptography", "httpx", "rich") if m in sys.modules)
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from vigil.wire import ActionCommand, public_key_text, sign_command, signature_valid
key = Ed25519PrivateKey.generate()
command = ActionCommand(action_id="a" * 16, device_id="d", type="Echo", issued_at="2026-01-01T00:00:00Z",
                        expires_at="2026-01-01T01:00:00Z", nonce="n" * 16)
print(before, signature_valid(public_key_text(key), sign_command(key, command)),
      signature_valid(public_key_text(Ed25519PrivateKey.generate()), sign_command(key, command)))
"""


def test_the_agent_loads_cryptography_only_to_verify_a_command() -> None:
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["[]", "True", "False"]
